//! The write queue against a model: the bytes that leave are exactly the frames pushed,
//! in order, and after a cut (a slow consumer about to get its final `ERROR`) nothing
//! but the completion of the frame in progress.
//!
//! Frames are pushed copied (`push`, one or several at once) or shared (`push_shared`,
//! the same `Rc` in several places), from a few bytes to several chunks long; a fake
//! socket takes a scripted number of bytes per call, or refuses with `WouldBlock`,
//! `Interrupted`, or a zero-length write. The model is the list of frames that must
//! leave; after every step the output must be a prefix of it and `pending()` the rest.

#![no_main]

use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use pubsub::connection::{ChunkPool, WriteQueue, CHUNK_SIZE};

/// One step of a script. The input is text, one step per line, so that the seed
/// corpus can be the write-queue tests' own sequences; other lines are ignored.
#[derive(Debug)]
enum Op {
    /// `p LEN [COUNT]`: copy COUNT (1..=3) frames of LEN bytes in one `push`.
    Push { len: usize, count: usize },
    /// `s LEN`: share a new frame of LEN bytes; `r K`: share again the K-th last one.
    Shared { len: usize, again: Option<usize> },
    /// `w BUDGET ANSWER...`: flush once with a byte budget; the socket's answers to
    /// successive calls are `N` (take N bytes), `b` (WouldBlock), `i` (Interrupted),
    /// `z` (a zero-length write); once they run out it blocks.
    Write { answers: Vec<Answer>, budget: usize },
    /// `c`: cut after the frame in progress; the caller then queues one last frame.
    Cut,
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    Take(usize),
    WouldBlock,
    Interrupted,
    Zero,
}

/// Longest frame a step may ask for: a few chunks.
const MAX_LEN: usize = 3 * CHUNK_SIZE;

fn script(data: &[u8]) -> Vec<Op> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Vec::new();
    };
    let num = |w: Option<&str>| w.and_then(|w| w.parse::<usize>().ok());
    text.lines()
        .filter_map(|line| {
            let mut w = line.split_whitespace();
            Some(match w.next()? {
                "p" => Op::Push {
                    len: num(w.next())? % MAX_LEN,
                    count: num(w.next()).unwrap_or(1) % 3 + 1,
                },
                "s" => Op::Shared {
                    len: num(w.next())? % MAX_LEN,
                    again: None,
                },
                "r" => Op::Shared {
                    len: 0,
                    again: Some(num(w.next())?),
                },
                "w" => Op::Write {
                    budget: num(w.next())?.max(1),
                    answers: w
                        .map(|a| match a {
                            "b" => Answer::WouldBlock,
                            "i" => Answer::Interrupted,
                            "z" => Answer::Zero,
                            n => Answer::Take(n.parse::<usize>().unwrap_or(1).max(1)),
                        })
                        .collect(),
                },
                "c" => Op::Cut,
                _ => return None,
            })
        })
        .take(128)
        .collect()
}

/// A socket scripted by the fuzzer; once the script runs out it blocks.
struct Socket<'a> {
    out: Vec<u8>,
    answers: std::slice::Iter<'a, Answer>,
    /// Whether the last call ended in `WouldBlock`.
    blocked: bool,
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        assert!(
            total > 0,
            "write_to called the socket with nothing to write"
        );
        let take = match self.answers.next() {
            None | Some(Answer::WouldBlock) => {
                self.blocked = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Some(Answer::Interrupted) => return Err(io::ErrorKind::Interrupted.into()),
            Some(Answer::Zero) => return Ok(0),
            Some(Answer::Take(n)) => *n,
        };
        let mut left = take.min(total);
        let n = left;
        for b in bufs {
            let k = b.len().min(left);
            self.out.extend_from_slice(&b[..k]);
            left -= k;
            if left == 0 {
                break;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A frame of `len` bytes plus its newline, numbered so that a reordering shows.
fn frame(n: usize, len: usize) -> Vec<u8> {
    let mut f = format!("{n}:").into_bytes();
    let fill = b'a' + (n % 26) as u8;
    f.resize(f.len().max(len), fill);
    f.push(b'\n');
    f
}

struct Model {
    /// Every byte that must leave, in order.
    want: Vec<u8>,
    /// Start offset of each frame in `want` (for the cut rule).
    starts: Vec<usize>,
}

impl Model {
    fn add(&mut self, f: &[u8]) {
        self.starts.push(self.want.len());
        self.want.extend_from_slice(f);
    }

    /// The cut: keep what was written and the rest of the frame in progress.
    fn cut(&mut self, written: usize) {
        let keep = match self.starts.iter().position(|&s| s >= written) {
            // `written` is at the start of frame i: nothing more goes.
            Some(i) if self.starts[i] == written => written,
            // In the middle of frame i-1: it goes to its end.
            Some(i) => self.starts[i],
            None => self.want.len(),
        };
        self.want.truncate(keep);
        self.starts.retain(|&s| s < keep);
    }
}

fuzz_target!(|data: &[u8]| {
    let ops = script(data);
    let mut pool = ChunkPool::default();
    let mut q = WriteQueue::default();
    let mut m = Model {
        want: Vec::new(),
        starts: Vec::new(),
    };
    let mut out: Vec<u8> = Vec::new();
    let mut shared: Vec<Rc<[u8]>> = Vec::new();
    let mut next = 0usize;
    let mut cut = false;
    for op in &ops {
        match op {
            Op::Push { len, count } => {
                // One `push` per frame: a push is one frame, which a cut keeps or drops
                // whole (frame boundaries are recorded, never searched for).
                for _ in 0..*count {
                    let f = frame(next, *len);
                    next += 1;
                    m.add(&f);
                    q.push(&mut pool, &f);
                }
            }
            Op::Shared { len, again } => {
                let again = again.and_then(|k| shared.len().checked_sub(1 + k % 4));
                let f = match again {
                    Some(i) => Rc::clone(&shared[i]),
                    None => {
                        let f: Rc<[u8]> = frame(next, *len).into();
                        next += 1;
                        shared.push(Rc::clone(&f));
                        f
                    }
                };
                m.add(&f);
                q.push_shared(&mut pool, &f);
            }
            Op::Write { answers, budget } => {
                let mut sock = Socket {
                    out: Vec::new(),
                    answers: answers.iter(),
                    blocked: false,
                };
                let budget = *budget;
                let pending = q.pending();
                match q.write_to(&mut pool, &mut sock, budget) {
                    Ok(f) => {
                        assert_eq!(f.written, sock.out.len(), "written");
                        assert_eq!(f.blocked, sock.blocked, "blocked");
                        if !f.blocked && f.written < budget {
                            assert_eq!(f.written, pending, "stopped early");
                        }
                    }
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::WriteZero),
                }
                out.extend_from_slice(&sock.out);
            }
            Op::Cut => {
                q.cut_after_current_frame(&mut pool);
                m.cut(out.len());
                // What the reactor does next: one final frame, then no more pushes.
                let f = frame(next, 3);
                next += 1;
                m.add(&f);
                q.push(&mut pool, &f);
                cut = true;
            }
        }
        assert!(
            m.want.starts_with(&out),
            "output is not a prefix of the frames"
        );
        assert_eq!(
            q.pending(),
            m.want.len() - out.len(),
            "pending after {op:?}"
        );
        assert_eq!(q.is_empty(), q.pending() == 0);
        assert_eq!(
            pool.queued(),
            q.pending(),
            "the pool's count of what queues owe"
        );
        if cut {
            break;
        }
    }
    // Drain: everything left leaves, and then exactly the frames are out.
    let answers = [Answer::Take(usize::MAX); 64];
    while !q.is_empty() {
        let mut sock = Socket {
            out: Vec::new(),
            answers: answers.iter(),
            blocked: false,
        };
        q.write_to(&mut pool, &mut sock, usize::MAX).expect("drain");
        out.extend_from_slice(&sock.out);
    }
    assert!(out == m.want, "output differs from the frames pushed");
    q.release(&mut pool);
    assert_eq!(q.pending(), 0);
    assert_eq!(pool.queued(), 0);
    assert!(pool.idle() <= 1024);
});
