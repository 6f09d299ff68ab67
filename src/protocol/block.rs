//! Sixteen bytes classified at once, for the PUBLISH fast path's scans.
//!
//! Owns two byte classifications over a 16-byte block, each returned as a bit mask (bit
//! `k` for byte `k`): the bytes that stop a JSON string scan, and the bytes that keep a
//! channel from being plain plus its dots. On x86-64 they are SSE2 compares (part of
//! the architecture's baseline, so always present); elsewhere the same masks come from
//! the eight-byte word tests. It never decides anything: callers do.

/// Bit `k` set for each byte `k` of `block` that is below 0x20, `"`, `\\` or at or
/// above 0x80: what stops the fast path's scan of a string.
#[inline(always)]
pub(crate) fn string_stops(block: &[u8; 16]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86-64 baseline, so these intrinsics are always
        // available; the load reads exactly the 16 bytes `block` refers to (unaligned
        // loads allowed). Measured (callgrind, benches/instructions.rs): see
        // [`plain_stops`].
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast());
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            // Signed compare: bytes at or above 0x80 are negative, so below 0x20 too.
            let low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
            _mm_movemask_epi8(_mm_or_si128(low, _mm_or_si128(eq(b'"'), eq(b'\\')))) as u32
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    string_stops_words(block)
}

/// [`string_stops`] from two eight-byte words (exact in its lowest bit).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn string_stops_words(block: &[u8; 16]) -> u32 {
    let (lo, hi) = words(block);
    let mask = |w: u64| super::json::special_mask(w) | (w & HIGH);
    lowest_exact_bits(mask(lo), mask(hi))
}

/// The bytes of `block` that keep a channel from being plain (as
/// [`super::channel::plain_word`]: >= 0x7f, < 0x21, `*`, `>`, `"`, `\\`), and its dots,
/// as bit masks. `bad` is exact in its lowest bit (bits above may be spurious off
/// x86-64); `dots` is exact below the lowest bad byte.
///
/// Measured (callgrind, benches/instructions.rs): scanning the canonical PUBLISH's
/// channel (`bench.pairs`) and message sixteen bytes at a time with these compares,
/// instead of eight at a time with word arithmetic, took parse + validate from 332 to
/// 284 instructions and `on_frame` from 622 to 571.
#[inline(always)]
pub(crate) fn plain_stops(block: &[u8; 16]) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: as in `string_stops`: SSE2 is baseline on x86-64, and the load reads
        // exactly `block`'s 16 bytes.
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast());
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            // Signed compares: below 0x21 (and every byte at or above 0x80), or 0x7f.
            let range = _mm_or_si128(
                _mm_cmplt_epi8(v, _mm_set1_epi8(0x21)),
                _mm_cmpgt_epi8(v, _mm_set1_epi8(0x7e)),
            );
            let bad = _mm_or_si128(
                _mm_or_si128(range, eq(b'*')),
                _mm_or_si128(_mm_or_si128(eq(b'>'), eq(b'"')), eq(b'\\')),
            );
            (
                _mm_movemask_epi8(bad) as u32,
                _mm_movemask_epi8(eq(b'.')) as u32,
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    plain_stops_words(block)
}

/// [`plain_stops`] from two eight-byte words.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn plain_stops_words(block: &[u8; 16]) -> (u32, u32) {
    let (lo, hi) = words(block);
    let (bad_lo, dots_lo) = super::channel::plain_word(lo);
    let (bad_hi, dots_hi) = super::channel::plain_word(hi);
    (
        lowest_exact_bits(bad_lo, bad_hi),
        lowest_exact_bits(dots_lo, dots_hi),
    )
}

const HIGH: u64 = 0x8080_8080_8080_8080;

fn words(block: &[u8; 16]) -> (u64, u64) {
    let (lo, hi) = block.split_at(8);
    let word = |s: &[u8]| s.first_chunk::<8>().map_or(0, |w| u64::from_le_bytes(*w));
    (word(lo), word(hi))
}

/// The high bit of each byte of two words as a 16-bit mask (low word first).
fn lowest_exact_bits(lo: u64, hi: u64) -> u32 {
    let gather = |m: u64| (((m & HIGH) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
    gather(lo) | (gather(hi) << 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both classifications agree with a byte-by-byte reading, for every byte value
    /// at every position (the lowest bit exactly; `dots` exactly below it).
    #[test]
    fn masks_agree_with_bytes() {
        let stops = |c: u8| !(0x20..0x80).contains(&c) || c == b'"' || c == b'\\';
        let bad = |c: u8| c <= b' ' || c >= 0x7f || matches!(c, b'*' | b'>' | b'"' | b'\\');
        for at in 0..16 {
            for c in 0..=255u8 {
                let mut block = [b'a'; 16];
                block[at] = c;
                block[(at + 5) % 16] = b'.';
                let first = |m: u32| (m != 0).then(|| m.trailing_zeros() as usize);
                let want = |f: &dyn Fn(u8) -> bool| block.iter().position(|&b| f(b));
                let stop = want(&bad);
                let below = stop.map_or(u32::MAX, |s| (1u32 << s) - 1);
                let dots_want = block
                    .iter()
                    .enumerate()
                    .filter(|&(_, &b)| b == b'.')
                    .fold(0u32, |m, (i, _)| m | (1 << i));
                // The compiled version and the word version (used off x86-64).
                for string in [string_stops(&block), string_stops_words(&block)] {
                    assert_eq!(first(string), want(&stops), "{c:#x} at {at}");
                }
                for (b, dots) in [plain_stops(&block), plain_stops_words(&block)] {
                    assert_eq!(first(b), stop, "{c:#x} at {at}");
                    assert_eq!(dots & below & 0xffff, dots_want & below, "{c:#x} at {at}");
                }
            }
        }
    }
}
