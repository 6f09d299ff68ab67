//! MQTT 3.1.1 at QoS 0, client side: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH,
//! PINGREQ/PINGRESP. Packets are cut by their fixed header's remaining length (a base-128
//! varint of at most four bytes).

use super::{Decoded, Event, FrameError};

const NAME: &str = "mqtt";

/// Seconds of silence the broker tolerates before dropping us; runs are far shorter.
const KEEP_ALIVE_SECS: u16 = 300;
/// Largest value the four-byte remaining length can hold (MQTT 3.1.1 section 2.2.3).
const MAX_REMAINING: usize = 268_435_455;

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const SUBSCRIBE: u8 = 0x82; // type 8 with the reserved flags 0b0010
const SUBACK: u8 = 0x90;
const PINGREQ: u8 = 0xC0;
const PINGRESP: u8 = 0xD0;

/// Appends the remaining-length varint.
pub fn put_remaining(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

/// Reads the remaining-length varint at `buf[1..]`: (length, header size), `Ok(None)` when
/// incomplete.
pub fn get_remaining(buf: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
    let mut len = 0usize;
    let mut shift = 0;
    for i in 1..=4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Ok(Some((len, i + 1)));
        }
        shift += 7;
    }
    Err(FrameError::new(
        NAME,
        "remaining length longer than 4 bytes",
    ))
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT with a clean session and a client id unique to this process and connection.
pub fn connect(out: &mut Vec<u8>, client_id: u64) {
    let id = format!("loadgen-{}-{client_id}", std::process::id());
    out.push(CONNECT);
    put_remaining(out, 10 + 2 + id.len());
    put_str(out, b"MQTT");
    out.push(4); // protocol level 3.1.1
    out.push(0x02); // clean session
    out.extend_from_slice(&KEEP_ALIVE_SECS.to_be_bytes());
    put_str(out, id.as_bytes());
}

/// SUBSCRIBE to one topic at QoS 0 (packet id 1; one subscribe per connection).
pub fn subscribe(out: &mut Vec<u8>, topic: &[u8]) {
    out.push(SUBSCRIBE);
    put_remaining(out, 2 + 2 + topic.len() + 1);
    out.extend_from_slice(&1u16.to_be_bytes());
    put_str(out, topic);
    out.push(0); // requested QoS
}

/// PUBLISH at QoS 0 (no packet id, no acknowledgement).
pub fn publish(out: &mut Vec<u8>, topic: &[u8], payload: &[u8]) {
    out.push(PUBLISH);
    put_remaining(out, 2 + topic.len() + payload.len());
    put_str(out, topic);
    out.extend_from_slice(payload);
}

/// PINGREQ.
pub fn ping(out: &mut Vec<u8>) {
    out.extend_from_slice(&[PINGREQ, 0]);
}

/// Cuts one packet off `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((len, header)) = get_remaining(buf)? else {
        return Ok(None);
    };
    if len > MAX_REMAINING {
        return Err(FrameError::new(NAME, "packet too large"));
    }
    let total = header + len;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[header..total];
    let event = match first & 0xF0 {
        CONNACK => match body {
            [_, 0] => Event::Other,
            [_, code] => Event::ServerError {
                code: if *code == 3 { "limit" } else { "refused" }.into(),
                text: format!("CONNACK return code {code}"),
            },
            _ => return Err(FrameError::new(NAME, "CONNACK is not 2 bytes")),
        },
        SUBACK => match body {
            [_, _, codes @ ..] if !codes.is_empty() && !codes.contains(&0x80) => Event::Subscribed,
            [_, _, _, ..] => Event::ServerError {
                code: "refused".into(),
                text: "SUBACK refused the subscription".into(),
            },
            _ => return Err(FrameError::new(NAME, "SUBACK too short")),
        },
        PUBLISH => {
            let qos = (first >> 1) & 3;
            let [hi, lo, rest @ ..] = body else {
                return Err(FrameError::new(NAME, "PUBLISH too short"));
            };
            let topic_len = usize::from(u16::from_be_bytes([*hi, *lo]));
            let skip = topic_len + if qos > 0 { 2 } else { 0 };
            let payload = rest
                .get(skip..)
                .ok_or_else(|| FrameError::new(NAME, "PUBLISH topic overruns packet"))?;
            Event::Message(payload)
        }
        PINGRESP => Event::Pong,
        _ => Event::Other,
    };
    Ok(Some((event, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_boundaries() {
        for (len, bytes) in [
            (0usize, vec![0x00u8]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xFF, 0xFF, 0x7F]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (MAX_REMAINING, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut out = Vec::new();
            put_remaining(&mut out, len);
            assert_eq!(out, bytes, "encode {len}");
            let mut framed = vec![PUBLISH];
            framed.extend_from_slice(&bytes);
            assert_eq!(get_remaining(&framed), Ok(Some((len, 1 + bytes.len()))));
            assert_eq!(get_remaining(&framed[..framed.len() - 1]), Ok(None));
        }
        assert!(get_remaining(&[PUBLISH, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
    }

    #[test]
    fn acks() {
        assert_eq!(decode(&[CONNACK, 2, 0, 0]), Ok(Some((Event::Other, 4))));
        assert!(matches!(
            decode(&[CONNACK, 2, 0, 5]),
            Ok(Some((Event::ServerError { .. }, 4)))
        ));
        assert_eq!(
            decode(&[SUBACK, 3, 0, 1, 0]),
            Ok(Some((Event::Subscribed, 5)))
        );
        assert!(matches!(
            decode(&[SUBACK, 3, 0, 1, 0x80]),
            Ok(Some((Event::ServerError { .. }, 5)))
        ));
        assert_eq!(decode(&[PINGRESP, 0]), Ok(Some((Event::Pong, 2))));
    }

    #[test]
    fn publish_round_trip_with_qos1_packet_id() {
        let mut out = Vec::new();
        publish(&mut out, b"t/x", b"payload");
        assert_eq!(
            decode(&out),
            Ok(Some((Event::Message(b"payload"), out.len())))
        );
        // The same message delivered at QoS 1 carries a packet id after the topic.
        let qos1 = [PUBLISH | 0x02, 7, 0, 1, b't', 0, 9, b'h', b'i'];
        assert_eq!(decode(&qos1), Ok(Some((Event::Message(b"hi"), 9))));
        assert!(decode(&[PUBLISH, 3, 0, 9, b't']).is_err());
    }
}
