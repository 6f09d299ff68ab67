//! A connection's queue of unsent output, and the pool its buffers come from.
//!
//! Owns the bytes waiting to go to one socket and the batching of them into few
//! `writev` calls. Small frames are copied into fixed-size chunks (one memcpy beats a
//! refcount and an iovec per 50-byte frame); large frames are shared by reference, so a
//! big MESSAGE fanned out to many subscribers exists once in memory. Chunks come from a
//! [`ChunkPool`] shared by all connections and go back to it once written, so a busy
//! broker does not allocate, free, and page-fault the same memory every loop turn, while
//! an idle connection holds no buffer at all. A frame never spans two chunks, and each
//! copied chunk records where its frames end, so a slow consumer's queue is cut at a
//! frame boundary whatever bytes the frames hold (no codec's delimiter is assumed). It
//! never decides policy (limits, closing): it only reports how much is pending.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Size of a pooled chunk (16 KiB: a few hundred small frames, and four of them fill a
/// default loopback send buffer in one `writev`).
pub const CHUNK_SIZE: usize = 16 * 1024;

/// Most idle chunks the pool keeps (1,024 x 16 KiB = 16 MiB): enough for a fan-out
/// to a thousand subscribers to reuse its buffers every turn; past it, chunks are freed.
const POOL_MAX_CHUNKS: usize = 1024;

/// Chunk slots an empty queue's deque may keep allocated (a few hundred bytes).
const DEQUE_KEEP: usize = 16;

/// Free chunks shared by every connection's queue, and the count of bytes all queues
/// owe (for the broker-wide memory bound). See the module documentation.
///
/// A burst (a slow consumer's queue released, a fan-out to thousands) can leave the pool
/// full long after the broker went quiet; [`ChunkPool::trim`], called periodically, frees
/// the chunks nobody took since the previous call.
#[derive(Debug, Default)]
pub struct ChunkPool {
    free: Vec<Owned>,
    /// Unsent bytes in every queue drawing on this pool (a shared frame counts once
    /// per queue holding it).
    queued: usize,
    /// Fewest idle chunks since the last [`ChunkPool::trim`]: that many were not needed.
    low_water: usize,
}

impl ChunkPool {
    /// An empty chunk with [`CHUNK_SIZE`] capacity.
    fn take(&mut self) -> Owned {
        let chunk = self.free.pop().unwrap_or_else(|| Owned {
            bytes: Vec::with_capacity(CHUNK_SIZE),
            ends: Vec::new(),
        });
        self.low_water = self.low_water.min(self.free.len());
        chunk
    }

    /// Returns a written chunk; oversized or surplus ones are freed.
    fn give(&mut self, mut chunk: Owned) {
        if chunk.bytes.capacity() == CHUNK_SIZE && self.free.len() < POOL_MAX_CHUNKS {
            chunk.bytes.clear();
            chunk.ends.clear();
            self.free.push(chunk);
        }
    }

    /// Idle chunks held.
    pub fn idle(&self) -> usize {
        self.free.len()
    }

    /// Unsent bytes in every queue drawing on this pool.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Frees the idle chunks that stayed idle since the previous call (the fewest idle at
    /// any moment in between: the broker's working set never reached them), keeping at
    /// least `keep`. Returns how many were freed. Meant for a periodic timer: a busy
    /// broker keeps what it reuses every turn, a quiet one gives its burst memory back.
    pub fn trim(&mut self, keep: usize) -> usize {
        let unused = self.low_water.min(self.free.len());
        let target = (self.free.len() - unused).max(keep);
        let freed = self.free.len().saturating_sub(target);
        self.free.truncate(target);
        if self.free.capacity() > 2 * target.max(DEQUE_KEEP) {
            self.free.shrink_to(target.max(DEQUE_KEEP));
        }
        self.low_water = self.free.len();
        freed
    }
}

/// Most iovecs handed to one `writev` (well under the kernel's IOV_MAX of 1024). Shared
/// frames take one each, so this bounds how many large frames one syscall carries; a
/// queue with a single chunk uses a plain `write` and skips the array.
const MAX_IOVECS: usize = 64;

/// Copied frames, appended one after another, and where each ends.
#[derive(Debug)]
struct Owned {
    bytes: Vec<u8>,
    /// End offset of each frame in `bytes`, ascending.
    ends: Vec<u32>,
}

/// One contiguous piece of queued output.
enum Chunk {
    /// Copied frames.
    Owned(Owned),
    /// One large frame shared with other connections' queues.
    Shared(Rc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => &v.bytes,
            Chunk::Shared(s) => s,
        }
    }
}

/// What one flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Bytes handed to the kernel.
    pub written: usize,
    /// The socket refused more (`WouldBlock`) before the queue emptied.
    pub blocked: bool,
}

/// Unsent output of one connection. See the module documentation.
#[derive(Default)]
pub struct WriteQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    head_written: usize,
    /// Unsent bytes in all chunks.
    pending: usize,
}

impl WriteQueue {
    /// Unsent bytes.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Queues a copy of `frame`: one whole frame, which a cut keeps or drops whole.
    #[inline]
    pub fn push(&mut self, pool: &mut ChunkPool, frame: &[u8]) {
        self.pending += frame.len();
        pool.queued += frame.len();
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut() {
            if last.bytes.capacity() - last.bytes.len() >= frame.len() {
                last.bytes.extend_from_slice(frame);
                last.ends.push(last.bytes.len() as u32);
                return;
            }
        }
        let mut chunk = if frame.len() <= CHUNK_SIZE {
            pool.take()
        } else {
            Owned {
                bytes: Vec::with_capacity(frame.len()),
                ends: Vec::with_capacity(1),
            }
        };
        chunk.bytes.extend_from_slice(frame);
        chunk.ends.push(chunk.bytes.len() as u32);
        self.chunks.push_back(Chunk::Owned(chunk));
    }

    /// Queues a frame shared with other queues.
    pub fn push_shared(&mut self, pool: &mut ChunkPool, frame: &Rc<[u8]>) {
        self.pending += frame.len();
        pool.queued += frame.len();
        self.chunks.push_back(Chunk::Shared(Rc::clone(frame)));
    }

    /// Drops everything after the frame currently being written (the whole queue if no
    /// frame is half-sent), so what the peer receives stays a sequence of whole frames.
    /// Used before a final `ERROR` to a connection that is being closed.
    pub fn cut_after_current_frame(&mut self, pool: &mut ChunkPool) {
        let before = self.pending;
        self.cut(pool);
        pool.queued -= before - self.pending;
    }

    fn cut(&mut self, pool: &mut ChunkPool) {
        let keep = match self.chunks.front_mut() {
            None => return,
            Some(_) if self.head_written == 0 => 0,
            Some(Chunk::Shared(s)) => s.len(),
            Some(Chunk::Owned(v)) => {
                // The end of the frame the written bytes reached into (or exactly
                // ended).
                let hw = self.head_written as u32;
                let i = v.ends.partition_point(|&end| end < hw);
                v.ends.get(i).map_or(v.bytes.len(), |&end| end as usize)
            }
        };
        for chunk in self.chunks.drain(1..) {
            if let Chunk::Owned(v) = chunk {
                pool.give(v);
            }
        }
        if keep == 0 {
            if let Some(Chunk::Owned(v)) = self.chunks.pop_front() {
                pool.give(v);
            }
            self.chunks.clear();
            self.head_written = 0;
            self.pending = 0;
            return;
        }
        if let Some(Chunk::Owned(v)) = self.chunks.front_mut() {
            v.bytes.truncate(keep);
            let frames = v.ends.partition_point(|&end| end as usize <= keep);
            v.ends.truncate(frames);
        }
        self.pending = keep - self.head_written;
    }

    /// Writes as much as the socket takes, up to about `budget` bytes, in batches of up
    /// to [`MAX_IOVECS`] chunks per `writev`.
    pub fn write_to<W: Write>(
        &mut self,
        pool: &mut ChunkPool,
        w: &mut W,
        budget: usize,
    ) -> io::Result<Flushed> {
        let mut written = 0;
        while self.pending > 0 && written < budget {
            let mut iov: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n_iov = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                iov[i] = IoSlice::new(if i == 0 {
                    &bytes[self.head_written..]
                } else {
                    bytes
                });
                n_iov += 1;
            }
            let n = match w.write_vectored(&iov[..n_iov]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flushed {
                        written,
                        blocked: true,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            written += n;
            self.advance(pool, n);
        }
        Ok(Flushed {
            written,
            blocked: false,
        })
    }

    /// Marks `n` bytes as written, returning finished chunks to the pool. The deque
    /// keeps its (small) buffer while the connection is active.
    fn advance(&mut self, pool: &mut ChunkPool, mut n: usize) {
        self.pending -= n;
        pool.queued -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.head_written;
            if n >= left {
                n -= left;
                self.head_written = 0;
                if let Some(Chunk::Owned(v)) = self.chunks.pop_front() {
                    pool.give(v);
                }
            } else {
                self.head_written += n;
                n = 0;
            }
        }
        if self.chunks.is_empty() && self.chunks.capacity() > DEQUE_KEEP {
            // A queue that was far behind does not keep its long deque once caught up.
            self.chunks = VecDeque::new();
        }
    }

    /// Gives back every buffer (the deque's included): for a connection going away.
    pub fn release(&mut self, pool: &mut ChunkPool) {
        pool.queued -= self.pending;
        for chunk in self.chunks.drain(..) {
            if let Chunk::Owned(v) = chunk {
                pool.give(v);
            }
        }
        self.chunks = VecDeque::new();
        self.head_written = 0;
        self.pending = 0;
    }
}

#[cfg(test)]
mod tests {
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
}
