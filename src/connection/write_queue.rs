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

/// Lets `write` append one frame to `chunk` and records where it ends; returns its
/// length.
#[inline(always)]
fn append_frame(chunk: &mut Owned, write: impl FnOnce(&mut Vec<u8>)) -> usize {
    let before = chunk.bytes.len();
    write(&mut chunk.bytes);
    chunk.ends.push(chunk.bytes.len() as u32);
    chunk.bytes.len() - before
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
    ///
    /// Inlined into the fan-out loop: the common case (room in the last chunk) is a
    /// few instructions and a copy; starting a new chunk is out of line.
    #[inline(always)]
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
        self.push_to_new_chunk(pool, frame);
    }

    /// [`WriteQueue::push`] when the last chunk has no room (or there is none).
    #[cold]
    #[inline(never)]
    fn push_to_new_chunk(&mut self, pool: &mut ChunkPool, frame: &[u8]) {
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

    /// Queues one frame that `write` appends in place to the last chunk (the fan-out's
    /// first receiver of a small frame: encoded straight into its queue, no copy).
    /// `len` is how many bytes `write` appends, at most [`CHUNK_SIZE`]; the frame's end
    /// is recorded from what it really appended, so boundaries stay exact even if `len`
    /// was wrong (the chunk then grows past its pooled size and is freed, not pooled).
    #[inline(always)]
    pub fn push_with(
        &mut self,
        pool: &mut ChunkPool,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        debug_assert!(len <= CHUNK_SIZE);
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut() {
            if last.bytes.capacity() - last.bytes.len() >= len {
                let added = append_frame(last, write);
                self.pending += added;
                pool.queued += added;
                return;
            }
        }
        let mut chunk = pool.take();
        let added = append_frame(&mut chunk, write);
        self.chunks.push_back(Chunk::Owned(chunk));
        self.pending += added;
        pool.queued += added;
    }

    /// The last frame queued by copy ([`WriteQueue::push`] or
    /// [`WriteQueue::push_with`]), if the queue ends with one (tests read the recorded
    /// frame ends through it).
    #[cfg(test)]
    pub(crate) fn last_frame(&self) -> Option<&[u8]> {
        let Some(Chunk::Owned(last)) = self.chunks.back() else {
            return None;
        };
        let end = *last.ends.last()? as usize;
        let start = match last.ends.len() {
            n if n >= 2 => last.ends[n - 2] as usize,
            _ => 0,
        };
        last.bytes.get(start..end)
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
mod tests;
