//! The pax record parser.

use super::super::pax::parse_pax;

#[test]
fn pax_records_are_parsed_by_their_lengths() {
    let data = b"30 mtime=1700000000.123456789\n22 path=app/a\nnewline\n13 size=1234\n16 linkpath=x/y\n\0\0\0";
    let pax = parse_pax(data).unwrap();
    assert_eq!(pax.path.as_deref(), Some(b"app/a\nnewline".as_slice()));
    assert_eq!(pax.link_path.as_deref(), Some(b"x/y".as_slice()));
    assert_eq!(pax.size, Some(1234));
    assert!(!pax.sparse);
    assert!(parse_pax(b"8 path=x\n").is_err(), "length off by one");
    assert!(parse_pax(b"99 path=x\n").is_err(), "length past the end");
    assert!(parse_pax(b"11 size=-1\n").is_err());
    assert!(parse_pax(b"22 GNU.sparse.major=1\n").unwrap().sparse);
    assert_eq!(parse_pax(b"8 path=\n").unwrap().path, None);
}
