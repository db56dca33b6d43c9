//! Procfile parsing.

use super::*;

#[test]
fn procfile_lines() {
    let p = parse_procfile("web: bin/web --port $PORT\n# c\n\nworker:  run.sh\nBad: x\nnocolon\n");
    assert_eq!(
        p,
        [
            ("web".into(), "bin/web --port $PORT".into()),
            ("worker".into(), "run.sh".into())
        ]
    );
}
