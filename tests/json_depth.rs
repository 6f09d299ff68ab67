//! Issue 7, item 8: the broker accepted frames nested 200 deep, though its scanner is
//! documented never to accept what serde_json refuses (serde_json builds no value past
//! 128 levels). From a plain socket: such a frame is `bad_json` like any malformed line,
//! the connection keeps working, and 127 levels (serde_json's most) still go through.

mod common;

use common::Broker;

/// A PUBLISH whose frame has `depth` arrays and objects open at once, its own included.
fn publish_nested(depth: usize) -> String {
    let inner = depth - 1;
    format!(
        r#"{{"command":"PUBLISH","channel":"deep","id":{depth},"message":{}1{}}}"#,
        "[".repeat(inner),
        "]".repeat(inner)
    )
}

#[test]
fn frame_nested_200_deep_is_bad_json_and_the_connection_stays_open() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    for depth in [128, 200, 5000] {
        c.send(&publish_nested(depth));
        let v = c.expect_error("bad_json");
        assert_eq!(v.get("id"), None, "no id is read from a refused frame: {v}");
    }
    // serde_json's deepest value still goes through, byte for byte.
    let mut sub = broker.connect();
    sub.subscribe("deep");
    c.send(&publish_nested(127));
    assert_eq!(c.expect("PUBLISHED")["receivers"], 1);
    let line = sub.recv_line();
    assert!(line.contains(&format!("{}1{}", "[".repeat(126), "]".repeat(126))));
}
