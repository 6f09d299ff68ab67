//! Federation trust and limits: who may become a link, what a link may claim, and
//! messages as large as a client may publish. Each test is named after the bug it
//! guards against; forged links are plain sockets speaking the link frames by hand.

mod common;

use common::federation::{read_until_end, subscriber, wait_interest, FakeLink};
use common::{raw_field, wait_until, Broker, Conn};

/// Hub, leaf-a and leaf-b, with a subscriber to `news` on leaf-b whose interest has
/// reached the hub.
fn hub_and_two_leaves(args: &[&str]) -> (Broker, Broker, Broker, Conn) {
    let hub = Broker::named("hub", args);
    let hub_addr = hub.addr();
    let mut leaf_args = vec!["--upstream", hub_addr.as_str()];
    leaf_args.extend_from_slice(args);
    let a = Broker::named("leaf-a", &leaf_args);
    let b = Broker::named("leaf-b", &leaf_args);
    let sub = subscriber(&b, "news");
    wait_interest(&hub, "leaf-b", 1);
    wait_interest(&a, "hub", 1);
    (hub, a, b, sub)
}

#[test]
fn a_forged_far_ahead_seq_does_not_silence_an_origin() {
    let (hub, a, _b, mut sub) = hub_and_two_leaves(&[]);
    // Without a credential anyone may link, but a link speaks only for paths ending
    // at itself: the original attack (path ["leaf-a"]) is refused outright ...
    let mut mallory = FakeLink::open(&hub, "mallory", None);
    mallory.route("news", u64::MAX, r#"["leaf-a"]"#, r#""forged-as-leaf-a""#);
    // ... and one that admits it came through mallory is delivered, but cannot make
    // leaf-a's own later messages look like duplicates.
    mallory.route("news", u64::MAX, r#"["leaf-a","mallory"]"#, r#""relayed""#);
    mallory.sync();
    let mut p = a.connect();
    p.publish("news", "1");
    p.publish("news", "2");
    p.publish("news", "\"end\"");
    assert_eq!(read_until_end(&mut sub), vec!["\"relayed\"", "1", "2"]);
    let link = hub.link("mallory").expect("mallory's link is up");
    assert_eq!(link["refused_in"], 1, "{link}");
    assert_eq!(hub.stats()["duplicates_dropped"], 0);
}

#[test]
fn a_link_may_not_speak_for_a_path_that_does_not_end_at_it() {
    let hub = Broker::named("hub", &[]);
    let mut sub = subscriber(&hub, "news");
    let mut mallory = FakeLink::open(&hub, "mallory", None);
    mallory
        .conn
        .send(r#"{"command":"INTEREST","channel":"secrets.>","path":["leaf-a"]}"#);
    mallory.route("news", 7, r#"["leaf-a","someone"]"#, "1");
    mallory.route("news", 8, r#"["mallory"]"#, "\"end\"");
    mallory.sync();
    assert_eq!(read_until_end(&mut sub), Vec::<String>::new());
    let link = hub.link("mallory").expect("link up");
    assert_eq!(link["refused_in"], 2, "{link}");
    assert_eq!(link["interest_in"], 0, "{link}");
}

#[test]
fn a_restarted_origin_counting_from_lower_numbers_is_delivered() {
    let hub = Broker::named("hub", &[]);
    let mut sub = subscriber(&hub, "news");
    let mut first = FakeLink::open(&hub, "leaf-x", None);
    first.route("news", 1_000_000, r#"["leaf-x"]"#, "1");
    first.sync();
    drop(first);
    wait_until("the first leaf-x link to go", || {
        hub.link("leaf-x").is_none()
    });
    // The same name again (a restart, or another broker reusing the name), with
    // lower sequence numbers.
    let mut second = FakeLink::open(&hub, "leaf-x", None);
    second.route("news", 5, r#"["leaf-x"]"#, "2");
    second.route("news", 6, r#"["leaf-x"]"#, "\"end\"");
    second.sync();
    assert_eq!(read_until_end(&mut sub), vec!["1", "2"]);
}

#[test]
fn with_a_token_only_a_holder_becomes_a_link() {
    let hub = Broker::named("hub", &["--token", "T"]);
    let mut c = hub.connect();
    c.send(r#"{"command":"HELLO","name":"mallory","echo":false,"link":true}"#);
    c.expect_error("unauthorized");
    c.expect_eof();
    let _ok = FakeLink::open(&hub, "friend", Some("T"));
    assert!(hub.link("friend").is_some());
}

#[test]
fn with_a_link_token_client_tokens_do_not_open_links() {
    let args = ["--token", "client-secret", "--link-token", "link-secret"];
    let hub = Broker::named("hub", &args);
    let mut c = hub.connect();
    c.send(r#"{"command":"HELLO","name":"m","link":true,"token":"client-secret"}"#);
    c.expect_error("unauthorized");
    c.expect_eof();
    // Clients use the client token; the link token is not a client token.
    let mut client = hub.connect();
    client.hello(r#","token":"client-secret""#);
    let mut wrong = hub.connect();
    wrong.send(r#"{"command":"HELLO","token":"link-secret"}"#);
    wrong.expect_error("unauthorized");
    // A real leaf presents --link-token on its link (its default upstream token).
    let leaf = Broker::named(
        "leaf",
        &["--upstream", &hub.addr(), "--link-token", "link-secret"],
    );
    let mut sub = leaf.connect();
    sub.hello(r#","token":"client-secret""#);
    sub.subscribe("news");
    wait_interest(&hub, "leaf", 1);
    client.publish("news", "\"across\"");
    assert_eq!(sub.expect_message("news"), "\"across\"");
}

/// A PUBLISH frame of exactly `len` bytes on `channel` whose message is a string with
/// escapes and non-ASCII text.
fn publish_of_exact_size(channel: &str, len: usize) -> (String, String) {
    let head = format!(r#"{{"command":"PUBLISH","channel":"{channel}","message":""#);
    let tail = r#""}"#;
    let mut body = String::new();
    let pattern = r#"é\u00e9\"\\\n✓ "#;
    while head.len() + body.len() + pattern.len() + tail.len() <= len {
        body.push_str(pattern);
    }
    while head.len() + body.len() + tail.len() < len {
        body.push('x');
    }
    let frame = format!("{head}{body}{tail}");
    assert_eq!(frame.len(), len);
    (frame, format!("\"{body}\""))
}

#[test]
fn a_max_size_message_crosses_two_hops_byte_identical() {
    let (hub, a, _b, mut sub) = hub_and_two_leaves(&["--max-frame", "65536"]);
    let (frame, message) = publish_of_exact_size("news", 65536);
    let mut p = a.connect();
    p.send(&frame);
    let v = p.expect("PUBLISHED");
    assert_eq!(v["receivers"], 1, "{v}");
    let line = sub.recv_line();
    assert_eq!(raw_field(&line, "message").as_deref(), Some(&*message));
    // The link stayed up: another message follows on it.
    p.publish("news", "\"after\"");
    assert_eq!(sub.expect_message("news"), "\"after\"");
    assert_eq!(hub.link("leaf-a").expect("link")["routes_in"], 2);
}

#[test]
fn a_message_too_large_for_a_peer_is_skipped_and_the_link_stays_up() {
    let hub = Broker::named("hub", &["--max-frame", "65536"]);
    let a = Broker::named(
        "leaf-a",
        &["--upstream", &hub.addr(), "--max-frame", "65536"],
    );
    let b = Broker::named(
        "leaf-b",
        &["--upstream", &hub.addr(), "--max-frame", "4096"],
    );
    let mut sub = subscriber(&b, "news");
    let mut at_hub = subscriber(&hub, "news");
    wait_interest(&hub, "leaf-b", 1);
    wait_interest(&a, "hub", 1);
    let (frame, message) = publish_of_exact_size("news", 20_000);
    let mut p = a.connect();
    p.send(&frame);
    p.expect("PUBLISHED");
    p.publish("news", "\"end\"");
    // The hub, whose limit is large enough, gets both; leaf-b only the small one.
    let line = at_hub.recv_line();
    assert_eq!(raw_field(&line, "message").as_deref(), Some(&*message));
    assert_eq!(at_hub.expect_message("news"), "\"end\"");
    assert_eq!(read_until_end(&mut sub), Vec::<String>::new());
    let link = hub.link("leaf-b").expect("leaf-b's link is still up");
    assert_eq!(link["too_large"], 1, "{link}");
    assert_eq!(link["max_frame"], 4096, "{link}");
    hub.wait_log("larger than the link's peer accepts");
}

#[test]
fn clients_are_not_told_about_the_link_protocol() {
    let hub = Broker::named("hub", &[]);
    let mut c = hub.connect();
    for frame in [
        r#"{"command":"WELCOME","id":1}"#,
        r#"{"command":"ROUTE","id":1}"#,
        r#"{"command":"ROUTE","channel":"x","seq":-1,"path":"no","message":1,"id":1}"#,
        r#"{"command":"INTEREST","id":1}"#,
        r#"{"command":"NOINTEREST","id":1}"#,
        r#"{"command":"ERROR","id":1}"#,
    ] {
        c.send(frame);
        let e = c.expect_error("unknown_command");
        assert_eq!(e["id"], 1, "{e}");
    }
    c.ping();
}

#[test]
fn the_same_payload_published_twice_crosses_links_twice() {
    // Duplicate detection drops only a repeat of one message (same origin and sequence
    // number), never a second message that happens to carry the same payload.
    let (_hub, a, _b, mut sub) = hub_and_two_leaves(&[]);
    let mut p = a.connect();
    for _ in 0..3 {
        assert_eq!(p.publish("news", "\"same\""), 1);
    }
    p.publish("news", "\"end\"");
    assert_eq!(
        read_until_end(&mut sub),
        vec!["\"same\"", "\"same\"", "\"same\""]
    );
}
