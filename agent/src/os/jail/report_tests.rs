//! Unit tests of the init→shim wire format.

use super::*;

fn words(frame: [u8; FRAME_LEN]) -> [i32; 3] {
    let w = |i: usize| i32::from_ne_bytes(frame[i * 4..i * 4 + 4].try_into().unwrap());
    [w(0), w(1), w(2)]
}

fn frame(words: [i32; 3]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

#[test]
fn every_message_round_trips() {
    for report in [
        Report::Started,
        Report::Failed {
            step: 13,
            errno: libc::EPERM,
        },
        Report::Failed { step: 0, errno: 0 },
        Report::Exited(ExitStatus::Code(0)),
        Report::Exited(ExitStatus::Code(255)),
        Report::Exited(ExitStatus::Signal(libc::SIGKILL)),
    ] {
        assert_eq!(Report::decode(&report.encode()), Ok(report));
    }
}

#[test]
fn the_bytes_on_the_wire_are_three_native_endian_words() {
    assert_eq!(words(Report::Started.encode()), [0, 0, 0]);
    assert_eq!(words(Report::Failed { step: 6, errno: 2 }.encode()), [1, 6, 2]);
    assert_eq!(words(Report::Exited(ExitStatus::Code(3)).encode()), [2, 0, 3]);
    assert_eq!(words(Report::Exited(ExitStatus::Signal(9)).encode()), [2, 1, 9]);
}

#[test]
fn short_long_and_unknown_frames_are_rejected() {
    let started = Report::Started.encode();
    assert_eq!(Report::decode(&[]), Err(DecodeError::Length(0)));
    assert_eq!(Report::decode(&started[..8]), Err(DecodeError::Length(8)));
    assert_eq!(Report::decode(&[0u8; 13]), Err(DecodeError::Length(13)));
    assert_eq!(Report::decode(&frame([7, 0, 0])), Err(DecodeError::UnknownKind(7)));
    assert_eq!(Report::decode(&frame([-1, 1, 1])), Err(DecodeError::UnknownKind(-1)));
    assert_eq!(Report::decode(&frame([2, 5, 1])), Err(DecodeError::ExitFlag(5)));
    assert!(
        Report::decode(b"garbage!garb")
            .unwrap_err()
            .to_string()
            .starts_with("report frame of unknown kind")
    );
}

#[test]
fn a_stream_decodes_frame_by_frame() {
    let mut bytes = Vec::new();
    bytes.extend(Report::Started.encode());
    bytes.extend(Report::Exited(ExitStatus::Signal(15)).encode());
    bytes.extend([1, 2]);
    let all: Vec<_> = Report::decode_all(&bytes).collect();
    assert_eq!(
        all,
        [
            Ok(Report::Started),
            Ok(Report::Exited(ExitStatus::Signal(15))),
            Err(DecodeError::Length(2))
        ]
    );
}
