use super::*;

fn code(line: &str) -> ErrorCode {
    parse_frame(line.as_bytes()).expect_err(line).code
}

#[test]
fn publish_keeps_message_text_exactly() {
    let line = r#"{"command":"publish","channel":"a.b","message":{"n":123456789012345678901234567890,"f":1.0,"s":"\u00e9\n\"q\""},"id":null}"#;
    let f = parse_frame(line.as_bytes()).expect("valid");
    assert_eq!(f.id.map(|r| r.get()), Some("null"));
    match f.command {
        Command::Publish {
            channel,
            message,
            ack,
        } => {
            assert_eq!(channel, "a.b");
            assert!(matches!(channel, Cow::Borrowed(_)));
            assert_eq!(
                message.get(),
                r#"{"n":123456789012345678901234567890,"f":1.0,"s":"\u00e9\n\"q\""}"#
            );
            assert!(ack);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn whitespace_around_object_and_values_is_fine() {
    let f = parse_frame(b"  { \"command\" : \"PING\" , \"id\" : 7 }  ").expect("valid");
    assert!(matches!(f.command, Command::Ping));
    assert_eq!(f.id.map(|r| r.get()), Some("7"));
}

#[test]
fn escaped_strings_are_unescaped() {
    let f = parse_frame(br#"{"command":"SUB\u0053CRIBE","channel":"a\u002eb"}"#).expect("ok");
    match f.command {
        Command::Subscribe { channel } => assert_eq!(channel, "a.b"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_codes_for_bad_input() {
    assert_eq!(code("not json"), ErrorCode::BadJson);
    assert_eq!(code(r#"{"command":"PING"} x"#), ErrorCode::BadJson);
    assert_eq!(code(r#"{"command":"PING"}{}"#), ErrorCode::BadJson);
    assert_eq!(
        code(r#"{"command":"PUBLISH","channel":"a","message":NaN}"#),
        ErrorCode::BadJson
    );
    assert_eq!(
        code(r#"{"command":"PUBLISH","channel":"a","message":Infinity}"#),
        ErrorCode::BadJson
    );
    assert_eq!(code("{\"command\":\"PING\"} // c"), ErrorCode::BadJson);
    assert_eq!(code("{\"command\":\"PI\tNG\"}"), ErrorCode::BadJson);
    assert_eq!(code("{\"command\":\"PING\""), ErrorCode::BadJson);
    assert_eq!(
        parse_frame(b"{\"command\":\"PING\",\"x\":\"\xff\"}")
            .unwrap_err()
            .code,
        ErrorCode::BadJson
    );
    assert_eq!(code("[1,2]"), ErrorCode::BadFrame);
    assert_eq!(code("\"PING\""), ErrorCode::BadFrame);
    assert_eq!(code("42"), ErrorCode::BadFrame);
    assert_eq!(code("{}"), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"command":1}"#), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"command":"FLY"}"#), ErrorCode::UnknownCommand);
    assert_eq!(code(r#"{"command":"SUBSCRIBE"}"#), ErrorCode::BadField);
    assert_eq!(
        code(r#"{"command":"SUBSCRIBE","channel":5}"#),
        ErrorCode::BadField
    );
    assert_eq!(
        code(r#"{"command":"PUBLISH","channel":"a"}"#),
        ErrorCode::BadField
    );
    assert_eq!(
        code(r#"{"command":"PUBLISH","channel":"a","message":1,"ack":"yes"}"#),
        ErrorCode::BadField
    );
    assert_eq!(code(r#"{"command":"HELLO","echo":1}"#), ErrorCode::BadField);
}

#[test]
fn errors_carry_the_id_when_readable() {
    let e = parse_frame(br#"{"command":"FLY","id":{"k":[1]}}"#).unwrap_err();
    assert_eq!(e.id.map(|r| r.get()), Some(r#"{"k":[1]}"#));
    let e = parse_frame(br#"{"id":"x"}"#).unwrap_err();
    assert_eq!(e.id.map(|r| r.get()), Some(r#""x""#));
}

#[test]
fn unknown_fields_are_ignored_and_last_duplicate_wins() {
    let f = parse_frame(br#"{"command":"PUBLISH","extra":[1,{"a":null}],"channel":"x","channel":"y","message":2,"ack":false}"#)
        .expect("valid");
    match f.command {
        Command::Publish { channel, ack, .. } => {
            assert_eq!(channel, "y");
            assert!(!ack);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hello_defaults() {
    let f = parse_frame(br#"{"command":"hello"}"#).expect("valid");
    match f.command {
        Command::Hello(h) => {
            assert!(h.echo);
            assert!(h.name.is_none() && h.token.is_none());
        }
        other => panic!("{other:?}"),
    }
}
