//! Unit tests of the `:authority` rewriter: frames built here, decoded back
//! with a fresh HPACK decoder as the server would.

use super::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A decoded header list: (name, value) pairs.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn request(authority: &str) -> Fields {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/dyno.v1.Agent/HostInfo"),
        (":authority", authority),
        ("te", "trailers"),
        ("content-type", "application/grpc"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect()
}

fn encode(enc: &mut loona_hpack::Encoder<'static>, fields: &Fields) -> Vec<u8> {
    enc.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
}

/// The frames of `bytes` (after the preface): (type, flags, stream, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    assert_eq!(&bytes[..PREFACE.len()], PREFACE);
    bytes = &bytes[PREFACE.len()..];
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    out
}

/// The header lists of the output's header blocks, as the server decodes them.
fn decoded(out: &[u8]) -> Vec<(u32, Fields)> {
    let mut dec = loona_hpack::Decoder::new();
    let mut lists = Vec::new();
    let mut block = Vec::new();
    for (kind, flags, stream, payload) in frames(out) {
        if kind == HEADERS || kind == CONTINUATION {
            assert_eq!(flags & PADDED, 0, "padding is dropped");
            let skip = if kind == HEADERS && flags & PRIORITY != 0 { 5 } else { 0 };
            block.extend_from_slice(&payload[skip..]);
            if flags & END_HEADERS != 0 {
                lists.push((stream, dec.decode(&block).expect("the server decodes the block")));
                block.clear();
            }
        }
    }
    lists
}

fn authority(list: &Fields) -> String {
    let (_, v) = list.iter().find(|(n, _)| n == b":authority").expect(":authority");
    String::from_utf8(v.clone()).unwrap()
}

fn run(input: &[u8]) -> Vec<u8> {
    let mut r = Rewriter::default();
    r.feed(input).expect("feed");
    r.output().to_vec()
}

#[test]
fn a_path_as_authority_becomes_localhost_and_everything_else_passes() {
    let mut enc = loona_hpack::Encoder::new();
    let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let data = frame(0x0, END_STREAM, 1, b"\0\0\0\0\0");
    let mut input = PREFACE.to_vec();
    input.extend(&settings);
    input.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &encode(&mut enc, &request("%2Frun%2Fd.sock")),
    ));
    input.extend(&data);
    // The second request's fields come from the client's dynamic table.
    input.extend(frame(
        HEADERS,
        END_HEADERS,
        3,
        &encode(&mut enc, &request("%2Frun%2Fd.sock")),
    ));
    input.extend(frame(
        HEADERS,
        END_HEADERS,
        5,
        &encode(&mut enc, &request("/run/d.sock")),
    ));
    input.extend(frame(HEADERS, END_HEADERS, 7, &encode(&mut enc, &request(""))));
    input.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        9,
        &encode(&mut enc, &request("localhost:50051")),
    ));

    let out = run(&input);
    let fs = frames(&out);
    assert_eq!(fs[0], (0x4, 0, 0, settings[9..].to_vec()), "SETTINGS unchanged");
    assert_eq!(fs[2], (0x0, END_STREAM, 1, b"\0\0\0\0\0".to_vec()), "DATA unchanged");
    let lists = decoded(&out);
    let got: Vec<(u32, String)> = lists.iter().map(|(s, l)| (*s, authority(l))).collect();
    assert_eq!(
        got,
        [
            (1, "localhost".to_string()),
            (3, "localhost".to_string()),
            (5, "localhost".to_string()),
            (7, "localhost".to_string()),
            (9, "localhost:50051".to_string()),
        ]
    );
    // Everything but the authority is as the client sent it, in order.
    let mut want = request("localhost");
    assert_eq!(lists[0].1, want);
    want[3].1 = b"localhost:50051".to_vec();
    assert_eq!(lists[4].1, want);
    assert_eq!(fs.last().unwrap().1, END_HEADERS | END_STREAM, "END_STREAM kept");
}

#[test]
fn bytes_fed_one_at_a_time_give_the_same_output() {
    let mut enc = loona_hpack::Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x4, 0, 0, &[]));
    input.extend(frame(HEADERS, END_HEADERS, 1, &encode(&mut enc, &request("%2Fa"))));
    input.extend(frame(0x0, END_STREAM, 1, &[0; 300]));
    let whole = run(&input);
    let mut r = Rewriter::default();
    for b in &input {
        r.feed(std::slice::from_ref(b)).expect("feed");
    }
    assert_eq!(r.output().to_vec(), whole);
}

#[test]
fn padding_priority_and_continuations_are_followed() {
    let mut enc = loona_hpack::Encoder::new();
    let block = encode(&mut enc, &request("%2Fx.sock"));
    let (a, b) = block.split_at(7);
    let mut payload = vec![3]; // pad length
    payload.extend_from_slice(&[0x80, 0, 0, 1, 15]); // priority
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, PADDED | PRIORITY, 1, &payload));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, b));
    let out = run(&input);
    let fs = frames(&out);
    assert_eq!(fs.len(), 1, "one HEADERS frame");
    assert_eq!(fs[0].1, PRIORITY | END_HEADERS);
    assert_eq!(&fs[0].3[..5], &[0x80, 0, 0, 1, 15], "priority kept");
    assert_eq!(authority(&decoded(&out)[0].1), "localhost");
}

#[test]
fn a_block_over_one_frame_is_cut_into_continuations() {
    let mut enc = loona_hpack::Encoder::new();
    let mut fields = request("%2Fbig");
    fields.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
    let mut input = PREFACE.to_vec();
    // The client may send big frames once the server allows them.
    for (i, chunk) in encode(&mut enc, &fields).chunks(30_000).enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let flags = if chunk.len() < 30_000 { END_HEADERS } else { 0 };
        input.extend(frame(kind, flags, 1, chunk));
    }
    let out = run(&input);
    let fs = frames(&out);
    assert!(fs.len() >= 3, "{} frames", fs.len());
    assert!(fs.iter().all(|f| f.3.len() <= MAX_FRAME));
    assert_eq!(fs[0].0, HEADERS);
    assert!(fs[1..].iter().all(|f| f.0 == CONTINUATION));
    let list = &decoded(&out)[0].1;
    assert_eq!(authority(list), "localhost");
    assert_eq!(list.last().unwrap().1.len(), 40_000);
}

#[test]
fn what_is_not_http2_with_prior_knowledge_passes_untouched() {
    let input = b"GET / HTTP/1.1\r\nHost: /weird\r\n\r\n";
    assert_eq!(run(input), input);
}

#[test]
fn a_broken_stream_is_an_error_not_a_guess() {
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "undecodable block",
            frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ),
        ("stray continuation", frame(CONTINUATION, END_HEADERS, 1, &[0x82])),
        (
            "more padding than frame",
            frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82]),
        ),
        ("interrupted block", {
            let mut v = frame(HEADERS, 0, 1, &[0x82]);
            v.extend(frame(0x0, 0, 1, &[]));
            v
        }),
    ];
    for (what, bytes) in cases {
        let mut input = PREFACE.to_vec();
        input.extend(bytes);
        let err = Rewriter::default().feed(&input).expect_err(what);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}");
    }
}

#[test]
fn integers_use_the_continuation_bytes() {
    let mut out = Vec::new();
    put_int(&mut out, 1337, 5, 0);
    assert_eq!(out, [31, 154, 10]);
    out.clear();
    put_int(&mut out, 126, 7, 0);
    assert_eq!(out, [126]);
    out.clear();
    put_int(&mut out, 127, 7, 0);
    assert_eq!(out, [127, 0]);
}

#[test]
fn valid_authorities_are_kept() {
    for ok in [
        "localhost",
        "localhost:1",
        "127.0.0.1:50051",
        "[::1]:5",
        "agent.internal",
    ] {
        assert!(valid_authority(ok.as_bytes()), "{ok}");
    }
    for bad in ["", "/run/d.sock", "%2Frun%2Fd.sock", "unix:/x", "a b"] {
        assert!(!valid_authority(bad.as_bytes()), "{bad}");
    }
}
