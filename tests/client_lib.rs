//! Tests of the client library `pubsub::Client` against a real broker started on a free
//! loopback port.
//!
//! Receives are bounded by `recv_timeout(TIMEOUT)` as a failure guard; ordering is
//! established with acknowledged publishes and `ping`, never with sleeps.

mod common;

use std::thread;

use common::{Broker, TIMEOUT};
use pubsub::protocol::ErrorCode;
use pubsub::{Client, ClientError, Hello, Message};

fn connect(broker: &Broker) -> Client {
    Client::connect(broker.addr().as_str()).expect("connect")
}

/// The next message, failing the test after [`TIMEOUT`].
fn next(client: &Client) -> Message {
    client
        .recv_timeout(TIMEOUT)
        .expect("connection open")
        .expect("a message within TIMEOUT")
}

#[test]
fn hello_gets_welcome() {
    let broker = Broker::start(&["--name", "test-broker"]);
    let client = connect(&broker);
    let welcome = client.hello(&Hello::new().name("tester")).expect("hello");
    assert_eq!(welcome.server, "test-broker");
    assert!(!welcome.version.is_empty());
    assert_eq!(welcome.max_frame, 1 << 20);
    let other = connect(&broker).hello(&Hello::new()).expect("hello");
    assert_ne!(welcome.client_id, other.client_id);
}

#[test]
fn subscribe_then_recv_what_another_client_publishes() {
    let broker = Broker::start(&[]);
    let sub = connect(&broker);
    assert_eq!(sub.subscribe("news").expect("subscribe"), 1);
    assert_eq!(sub.subscribe("sports.*").expect("subscribe"), 2);
    // Idempotent: same count.
    assert_eq!(sub.subscribe("news").expect("subscribe"), 2);

    let publisher = connect(&broker);
    assert_eq!(publisher.publish("news", "hello").expect("publish"), 1);
    assert_eq!(publisher.publish("sports.tennis", &42).expect("publish"), 1);
    let m = next(&sub);
    assert_eq!((m.channel.as_str(), m.raw()), ("news", "\"hello\""));
    assert_eq!(m.text(), "hello");
    let m = next(&sub);
    assert_eq!(m.channel, "sports.tennis");
    assert_eq!(m.json::<u32>().expect("number"), 42);
}

#[test]
fn publish_returns_the_number_of_receivers() {
    let broker = Broker::start(&[]);
    let publisher = connect(&broker);
    assert_eq!(publisher.publish("news", &1).expect("publish"), 0);
    let a = connect(&broker);
    a.subscribe("news").expect("subscribe");
    let b = connect(&broker);
    // Two matching subscriptions, one connection: counted once.
    b.subscribe("news").expect("subscribe");
    b.subscribe(">").expect("subscribe");
    assert_eq!(publisher.publish("news", &2).expect("publish"), 2);
    assert_eq!(b.unsubscribe("news").expect("unsubscribe"), 1);
    assert_eq!(b.unsubscribe(">").expect("unsubscribe"), 0);
    assert_eq!(publisher.publish("news", &3).expect("publish"), 1);
}

#[test]
fn publish_raw_keeps_the_json_text() {
    let broker = Broker::start(&[]);
    let sub = connect(&broker);
    sub.subscribe("raw").expect("subscribe");
    let publisher = connect(&broker);
    let raw = r#"{"big":123456789012345678901234567890,"f":1.0,"s":"\u00e9\n\"q\"","l":[ 1 , 2 ]}"#;
    assert_eq!(publisher.publish_raw("raw", raw).expect("publish"), 1);
    assert_eq!(next(&sub).raw(), raw);
    // Invalid JSON is refused before anything is sent.
    assert!(matches!(
        publisher.publish_raw("raw", "{nope"),
        Err(ClientError::Encode(_))
    ));
}

#[test]
fn publish_no_ack_is_delivered() {
    let broker = Broker::start(&[]);
    let sub = connect(&broker);
    sub.subscribe("fast").expect("subscribe");
    let publisher = connect(&broker);
    for i in 0..10 {
        publisher.publish_no_ack("fast", &i).expect("publish");
    }
    // A ping after the publishes: its reply means the broker handled them all.
    publisher.ping().expect("ping");
    for i in 0..10 {
        assert_eq!(next(&sub).json::<i32>().expect("int"), i);
    }
}

#[test]
fn ping_measures_a_round_trip() {
    let broker = Broker::start(&[]);
    let client = connect(&broker);
    let rtt = client.ping().expect("ping");
    assert!(rtt < TIMEOUT);
}

#[test]
fn recv_timeout_returns_none_when_nothing_comes() {
    let broker = Broker::start(&[]);
    let client = connect(&broker);
    client.subscribe("quiet").expect("subscribe");
    // Everything published before the PONG is already queued; nothing was.
    client.ping().expect("ping");
    assert!(client.try_recv().expect("open").is_none());
    let got = client
        .recv_timeout(std::time::Duration::from_millis(50))
        .expect("open");
    assert!(got.is_none());
}

#[test]
fn echo_false_skips_own_messages() {
    let broker = Broker::start(&[]);
    let client = connect(&broker);
    client.hello(&Hello::new().echo(false)).expect("hello");
    client.subscribe("self").expect("subscribe");
    assert_eq!(client.publish("self", "me").expect("publish"), 0);
    client.ping().expect("ping");
    assert!(client.try_recv().expect("open").is_none());
}

#[test]
fn broker_error_surfaces_with_its_code_and_the_connection_keeps_working() {
    let broker = Broker::start(&["--max-subscriptions", "1"]);
    let client = connect(&broker);
    client.subscribe("a").expect("first subscription");
    let err = client.subscribe("b").expect_err("over the limit");
    assert!(
        matches!(&err, ClientError::Broker { code, .. } if code == "limit"),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(ErrorCode::Limit));
    // `limit` is not fatal.
    client.ping().expect("still open");
    assert_eq!(client.publish("a", "x").expect("publish"), 1);
}

#[test]
fn wrong_token_is_unauthorized_then_closed() {
    let broker = Broker::start(&["--token", "s3cret"]);
    let client = connect(&broker);
    let err = client
        .hello(&Hello::new().token("wrong"))
        .expect_err("unauthorized");
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err:?}");
    let err = client.recv_timeout(TIMEOUT).expect_err("closed");
    assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");

    let good = connect(&broker);
    good.hello(&Hello::new().token("s3cret")).expect("hello");
    good.ping().expect("ping");
}

#[test]
fn bad_channels_are_refused_before_sending() {
    let broker = Broker::start(&[]);
    let client = connect(&broker);
    assert!(matches!(
        client.subscribe("a..b"),
        Err(ClientError::BadChannel(_))
    ));
    assert!(matches!(
        client.publish("a.*", &1),
        Err(ClientError::BadChannel(_))
    ));
    client.ping().expect("still open");
}

#[test]
fn one_thread_receives_while_another_publishes_in_order() {
    const COUNT: u64 = 1_000;
    let broker = Broker::start(&[]);
    let client = connect(&broker);
    client.subscribe("seq").expect("subscribe");
    let publisher = client.clone();
    let sender = thread::spawn(move || {
        for i in 0..COUNT {
            assert_eq!(publisher.publish("seq", &i).expect("publish"), 1);
        }
    });
    for (i, message) in client.messages().take(COUNT as usize).enumerate() {
        let message = message.expect("message");
        assert_eq!(message.json::<u64>().expect("number"), i as u64);
    }
    sender.join().expect("publisher thread");
}

#[test]
fn a_closed_connection_is_reported_as_closed() {
    let mut broker = Broker::start(&[]);
    let client = connect(&broker);
    client.subscribe("news").expect("subscribe");
    broker.kill();
    let err = client.recv_timeout(TIMEOUT).expect_err("closed");
    assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
    let err = client.publish("news", "late").expect_err("closed");
    assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
    assert!(client.messages().all(|m| m.is_err()));
}

#[test]
fn close_ends_every_clone() {
    let broker = Broker::start(&[]);
    let client = connect(&broker);
    let reader = client.clone();
    let waiter = thread::spawn(move || reader.recv());
    client.close();
    let result = waiter.join().expect("reader thread");
    assert!(
        matches!(result, Err(ClientError::Closed { .. })),
        "{result:?}"
    );
    let err = client.ping().expect_err("closed");
    assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
}

#[test]
fn too_large_frame_closes_with_frame_too_large() {
    let broker = Broker::start(&["--max-frame", "1024"]);
    let client = connect(&broker);
    let big = "x".repeat(4096);
    let err = client.publish("big", &big).expect_err("too large");
    assert_eq!(err.code(), Some(ErrorCode::FrameTooLarge), "{err:?}");
}

/// Issue 7, item 9: a client refused at `--max-connections` used to see
/// `Closed { reason: None }`; the broker's `ERROR limit` (id-less, non-fatal by code,
/// followed by the close) must be kept as the reason.
#[test]
fn refused_at_max_connections_is_closed_with_reason_limit_not_none() {
    let broker = Broker::start(&["--max-connections", "1"]);
    let first = connect(&broker);
    // Its reply shows the broker admitted it, so the next connection is over the limit.
    first.ping().expect("the first connection is admitted");

    let refused = connect(&broker);
    let err = refused.ping().expect_err("over the connection limit");
    assert!(
        matches!(&err, ClientError::Closed { reason: Some(r) }
            if matches!(&**r, ClientError::Broker { code, .. } if code == "limit")),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(ErrorCode::Limit));
    // Every later call sees the same reason.
    let err = refused.recv_timeout(TIMEOUT).expect_err("closed");
    assert_eq!(err.code(), Some(ErrorCode::Limit), "{err:?}");
    first.ping().expect("the admitted connection is unaffected");
}
