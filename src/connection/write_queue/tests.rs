//! Write-queue tests: frames through partial writes, cuts, the pool's accounting and
//! trimming, and the write errors a socket can return.

use super::*;

/// A writer that accepts at most `cap` bytes per call and then blocks after
/// `limit` bytes in total.
struct Trickle {
    out: Vec<u8>,
    cap: usize,
    limit: usize,
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let room = self.limit - self.out.len();
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(self.cap - n).min(room - n);
            self.out.extend_from_slice(&b[..take]);
            n += take;
            if n == self.cap || n == room {
                break;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn writes_everything_in_order_through_partial_writes() {
    let mut pool = ChunkPool::default();
    let mut q = WriteQueue::default();
    let shared: Rc<[u8]> = Rc::from(&b"SHARED\n"[..]);
    let mut want = Vec::new();
    for i in 0..1000 {
        let f = format!("frame {i}\n");
        q.push(&mut pool, f.as_bytes());
        want.extend_from_slice(f.as_bytes());
        if i % 100 == 0 {
            q.push_shared(&mut pool, &shared);
            want.extend_from_slice(&shared);
        }
    }
    assert_eq!(q.pending(), want.len());
    let mut w = Trickle {
        out: Vec::new(),
        cap: 7,
        limit: usize::MAX,
    };
    let f = q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    assert_eq!(
        f,
        Flushed {
            written: want.len(),
            blocked: false
        }
    );
    assert_eq!(w.out, want);
    assert!(q.is_empty());
    // Written chunks went back to the pool for the next turn.
    assert!(pool.idle() > 0);
    q.release(&mut pool);
}

#[test]
fn reports_blocked_and_resumes() {
    let mut q = WriteQueue::default();
    let mut pool = ChunkPool::default();
    q.push(&mut pool, b"hello\n");
    q.push(&mut pool, b"world\n");
    let mut w = Trickle {
        out: Vec::new(),
        cap: 100,
        limit: 8,
    };
    assert_eq!(
        q.write_to(&mut pool, &mut w, usize::MAX).unwrap(),
        Flushed {
            written: 8,
            blocked: true
        }
    );
    assert_eq!(q.pending(), 4);
    w.limit = 100;
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    assert_eq!(w.out, b"hello\nworld\n");
}

#[test]
fn cut_keeps_the_frame_in_progress_only() {
    let mut q = WriteQueue::default();
    let mut pool = ChunkPool::default();
    q.push(&mut pool, b"aaaa\n");
    q.push(&mut pool, b"bbbb\n");
    q.push(&mut pool, b"cccc\n");
    let mut w = Trickle {
        out: Vec::new(),
        cap: 100,
        limit: 7,
    };
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    q.cut_after_current_frame(&mut pool);
    q.push(&mut pool, b"ERR\n");
    w.limit = 100;
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    assert_eq!(w.out, b"aaaa\nbbbb\nERR\n");

    // Nothing half-sent: everything queued goes.
    let mut q = WriteQueue::default();
    let mut pool = ChunkPool::default();
    q.push(&mut pool, b"aaaa\n");
    q.cut_after_current_frame(&mut pool);
    assert!(q.is_empty());

    // Cut exactly at a frame boundary.
    let mut q = WriteQueue::default();
    let mut pool = ChunkPool::default();
    q.push(&mut pool, b"aaaa\n");
    q.push(&mut pool, b"bbbb\n");
    let mut w = Trickle {
        out: Vec::new(),
        cap: 100,
        limit: 5,
    };
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    q.cut_after_current_frame(&mut pool);
    assert!(q.is_empty());
}

#[test]
fn cut_does_not_depend_on_frame_content() {
    // Frames holding newlines (RESP, NATS, MQTT and WebSocket frames may): the cut
    // still keeps exactly the frame in progress.
    let mut q = WriteQueue::default();
    let mut pool = ChunkPool::default();
    q.push(&mut pool, b"a\nb\nc");
    q.push(&mut pool, b"d\ne");
    q.push(&mut pool, b"f\n");
    let mut w = Trickle {
        out: Vec::new(),
        cap: 100,
        limit: 6,
    };
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    q.cut_after_current_frame(&mut pool);
    q.push(&mut pool, b"ERR");
    w.limit = 100;
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    assert_eq!(w.out, b"a\nb\ncd\neERR");
}

/// `n` chunks given to the pool by a queue that was that far behind.
fn fill(pool: &mut ChunkPool, n: usize) {
    let mut q = WriteQueue::default();
    for _ in 0..n {
        q.push(pool, &[b'x'; CHUNK_SIZE]);
    }
    q.release(pool);
}

#[test]
fn trim_frees_what_stayed_idle() {
    let mut pool = ChunkPool::default();
    fill(&mut pool, 100);
    assert_eq!(pool.idle(), 100);
    // They were all in use during this interval: none goes yet.
    assert_eq!(pool.trim(8), 0);
    // None was taken during the next: everything beyond `keep` goes.
    assert_eq!(pool.trim(8), 92);
    assert_eq!(pool.idle(), 8);
    // Still unused: `keep` stays.
    assert_eq!(pool.trim(8), 0);
    assert_eq!(pool.trim(0), 8);
    assert_eq!(pool.idle(), 0);
}

/// Frames are packed into as few pooled chunks as fit them, and every chunk goes
/// back to the pool.
#[test]
fn frames_fill_a_chunk_before_the_next_is_taken() {
    let mut pool = ChunkPool::default();
    let mut q = WriteQueue::default();
    for _ in 0..16 {
        q.push(&mut pool, &[b'f'; 1024]);
    }
    q.release(&mut pool);
    assert_eq!(pool.idle(), 1, "16 x 1 KiB fill one 16 KiB chunk");
    for _ in 0..17 {
        q.push(&mut pool, &[b'f'; 1024]);
    }
    q.release(&mut pool);
    assert_eq!(pool.idle(), 2);
}

/// A second cut, after a frame was queued behind the first cut's frame in progress,
/// keeps exactly the frame then in progress: the first cut must have dropped the
/// frame ends of what it dropped.
#[test]
fn a_second_cut_keeps_only_the_frame_in_progress() {
    let mut pool = ChunkPool::default();
    let mut q = WriteQueue::default();
    for frame in [&b"first frame\n"[..], b"second\n", b"third\n", b"fourth\n"] {
        q.push(&mut pool, frame);
    }
    let mut w = Trickle {
        out: Vec::new(),
        cap: 100,
        limit: 3,
    };
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    q.cut_after_current_frame(&mut pool);
    assert_eq!(q.pending(), 9, "the rest of the first frame");
    q.push(&mut pool, b"error\n");
    q.push(&mut pool, b"never\n");
    // Into the middle of "error\n", then cut again.
    w.limit = 14;
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    q.cut_after_current_frame(&mut pool);
    assert_eq!(q.pending(), 4, "the rest of the error frame");
    w.limit = 1000;
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    assert_eq!(w.out, b"first frame\nerror\n");
    assert_eq!(q.pending(), 0);
    q.release(&mut pool);
}

/// A writer that fails with `first` once, then accepts everything.
struct FailOnce {
    first: Option<io::ErrorKind>,
    out: Vec<u8>,
}

impl Write for FailOnce {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(kind) = self.first.take() {
            return Err(kind.into());
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if let Some(kind) = self.first.take() {
            return Err(kind.into());
        }
        let n = bufs.iter().map(|b| b.len()).sum();
        for b in bufs {
            self.out.extend_from_slice(b);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// EINTR is retried, EAGAIN reports blocked, any other error is returned.
#[test]
fn write_errors_are_retried_reported_or_returned() {
    let mut pool = ChunkPool::default();
    let mut q = WriteQueue::default();
    q.push(&mut pool, b"frame\n");
    let mut w = FailOnce {
        first: Some(io::ErrorKind::Interrupted),
        out: Vec::new(),
    };
    let f = q
        .write_to(&mut pool, &mut w, usize::MAX)
        .expect("EINTR retried");
    assert_eq!(
        (f.written, f.blocked, w.out.as_slice()),
        (6, false, &b"frame\n"[..])
    );
    q.push(&mut pool, b"frame\n");
    w.first = Some(io::ErrorKind::WouldBlock);
    let f = q
        .write_to(&mut pool, &mut w, usize::MAX)
        .expect("blocked is not an error");
    assert!(f.blocked && f.written == 0);
    w.first = Some(io::ErrorKind::BrokenPipe);
    let e = q
        .write_to(&mut pool, &mut w, usize::MAX)
        .expect_err("a broken pipe");
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    q.release(&mut pool);
}

/// A queue that fell far behind gives its long deque back once it has caught up.
#[test]
fn a_caught_up_queue_drops_its_long_deque() {
    let mut pool = ChunkPool::default();
    let mut q = WriteQueue::default();
    for _ in 0..100 {
        q.push(&mut pool, &[b'd'; CHUNK_SIZE]);
    }
    assert!(q.chunks.capacity() >= 100);
    let mut sink = Vec::new();
    q.write_to(&mut pool, &mut sink, usize::MAX).unwrap();
    assert_eq!(sink.len(), 100 * CHUNK_SIZE);
    assert!(q.chunks.capacity() <= DEQUE_KEEP);
    q.release(&mut pool);
}

/// The pool keeps only chunks of exactly CHUNK_SIZE (an oversized frame's buffer is
/// freed) and at most POOL_MAX_CHUNKS of them.
#[test]
fn the_pool_keeps_only_standard_chunks_up_to_its_cap() {
    let mut pool = ChunkPool::default();
    let mut q = WriteQueue::default();
    q.push(&mut pool, &vec![b'z'; CHUNK_SIZE * 3]);
    q.release(&mut pool);
    assert_eq!(pool.idle(), 0, "an oversized chunk is not kept");
    fill(&mut pool, POOL_MAX_CHUNKS + 10);
    assert_eq!(pool.idle(), POOL_MAX_CHUNKS);
}

#[test]
fn trim_keeps_the_working_set() {
    let mut pool = ChunkPool::default();
    fill(&mut pool, 100);
    pool.trim(100); // start an interval with 100 idle
                    // A busy broker: 30 chunks in use at once, given back every turn.
    for _ in 0..5 {
        let mut q = WriteQueue::default();
        for _ in 0..30 {
            q.push(&mut pool, &[b'y'; CHUNK_SIZE]);
        }
        q.release(&mut pool);
    }
    assert_eq!(pool.trim(0), 70);
    assert_eq!(pool.idle(), 30);
    // The next interval nobody sends: the rest goes too.
    assert_eq!(pool.trim(0), 30);
    assert_eq!(pool.idle(), 0);
    // The free list's own buffer shrinks with it.
    assert!(pool.free.capacity() <= 2 * DEQUE_KEEP);
    // A pool that never held anything trims nothing.
    assert_eq!(ChunkPool::default().trim(4), 0);
}

#[test]
fn the_pool_counts_what_every_queue_owes() {
    let mut pool = ChunkPool::default();
    let mut a = WriteQueue::default();
    let mut b = WriteQueue::default();
    let shared: Rc<[u8]> = Rc::from(&[b'x'; 2000][..]);
    a.push(&mut pool, b"hello\n");
    a.push_shared(&mut pool, &shared);
    a.push(&mut pool, b"dropped by the cut\n");
    b.push_shared(&mut pool, &shared);
    b.push(&mut pool, b"more\n");
    assert_eq!(pool.queued(), a.pending() + b.pending());
    let mut w = Trickle {
        out: Vec::new(),
        cap: 100,
        limit: 10,
    };
    a.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    assert_eq!(pool.queued(), a.pending() + b.pending());
    let before = a.pending();
    a.cut_after_current_frame(&mut pool);
    assert!(a.pending() < before, "the cut dropped a frame");
    assert_eq!(pool.queued(), a.pending() + b.pending());
    b.release(&mut pool);
    a.release(&mut pool);
    assert_eq!(pool.queued(), 0);
}

#[test]
fn budget_bounds_one_flush() {
    let mut q = WriteQueue::default();
    let mut pool = ChunkPool::default();
    for _ in 0..100 {
        q.push(&mut pool, &[b'x'; 1000]);
    }
    let mut w = Trickle {
        out: Vec::new(),
        cap: 1000,
        limit: usize::MAX,
    };
    let f = q.write_to(&mut pool, &mut w, 10_000).unwrap();
    assert_eq!(f.written, 10_000);
    assert!(!f.blocked);
    assert_eq!(q.pending(), 90_000);
}

/// Frames written in place keep exact boundaries (a cut keeps exactly the frame in
/// progress), count as pending, start a new chunk when the last one is full, and are
/// what `last_frame` returns.
#[test]
fn frames_written_in_place_have_exact_boundaries() {
    let mut q = WriteQueue::default();
    let mut pool = ChunkPool::default();
    assert_eq!(q.last_frame(), None);
    q.push(&mut pool, b"a\nb");
    q.push_with(&mut pool, 3, |out| out.extend_from_slice(b"c\nd"));
    assert_eq!(q.last_frame(), Some(&b"c\nd"[..]));
    q.push(&mut pool, b"e");
    assert_eq!(q.last_frame(), Some(&b"e"[..]));
    assert_eq!((q.pending(), pool.queued()), (7, 7));
    let mut w = Trickle {
        out: Vec::new(),
        cap: 100,
        limit: 4,
    };
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    q.cut_after_current_frame(&mut pool);
    w.limit = 100;
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    assert_eq!(w.out, b"a\nbc\nd");
    assert_eq!(pool.queued(), 0);

    // A full last chunk: the frame goes to a new chunk, whole.
    let mut q = WriteQueue::default();
    let mut pool = ChunkPool::default();
    let big = vec![b'x'; CHUNK_SIZE - 2];
    q.push(&mut pool, &big);
    q.push_with(&mut pool, 3, |out| out.extend_from_slice(b"yyy"));
    assert_eq!(q.last_frame(), Some(&b"yyy"[..]));
    assert_eq!(q.pending(), CHUNK_SIZE + 1);
    let mut w = Trickle {
        out: Vec::new(),
        cap: usize::MAX,
        limit: usize::MAX,
    };
    q.write_to(&mut pool, &mut w, usize::MAX).unwrap();
    assert_eq!(&w.out[CHUNK_SIZE - 2..], b"yyy");
}
