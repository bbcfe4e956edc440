//! CRC32C (Castagnoli): slicing-by-8 tables, and the CPU's CRC32 instruction for large inputs.
//!
//! The snapshot's trust comes from its owner and mode; the checksum only has to catch torn or
//! corrupted content. Lookups checksum a few KiB (a header and one shard), where the tables
//! are fast enough and asking the CPU for its features would cost more than the sum itself
//! ([`HW_MIN_LEN`]); enumeration and jitd's writer checksum megabytes, where the instruction
//! pays.

const POLY: u32 = 0x82F6_3B78;

#[allow(clippy::indexing_slicing)] // const evaluation: an out-of-range index fails the build, not a caller
const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

/// CRC32C of `data`. Large inputs (the enumeration of a big snapshot, jitd's writer, tens of
/// megabytes) use the CPU's CRC32 instruction where there is one (SSE 4.2, checked at run
/// time), about ten times faster than the tables. Inputs below [`HW_MIN_LEN`] always use the
/// tables: asking the CPU is the costly part for them (see there).
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// The CRC32C of `A ++ data`, given `crc = crc32c(A)`: a checksum continued over bytes that
/// arrive in pieces (jitd checks a snapshot it streamed to disk by reading it back in pieces).
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    if data.len() >= HW_MIN_LEN {
        if let Some(crc) = crc32c_hardware(crc, data) {
            return crc;
        }
    }
    crc32c_tables(crc, data)
}

/// As [`crc32c`], with the CPU's instruction whatever the length of `data`: for a caller that
/// checksums at least [`HW_MIN_LEN`] in all, in pieces below it (a listing's chunks), which
/// repays the one question to the CPU many times over.
pub fn crc32c_in_pieces(data: &[u8]) -> u32 {
    crc32c_hardware(0, data).unwrap_or_else(|| crc32c_tables(0, data))
}

/// The CRC32C of `A ++ B` from `a = crc32c(A)`, `b = crc32c(B)` and `B`'s length, without
/// either's bytes: jitd's writer checksums each section once and joins the sums, so an image
/// written to disk in pieces needs no second pass and no copy of itself in memory. (The
/// initial and final inversions cancel: appending `B` to `A` multiplies `A`'s register by
/// `x^(8 len)` and adds `B`'s own sum.)
pub fn crc32c_combine(a: u32, b: u32, len_b: u64) -> u32 {
    mul_mod_p(x_pow_8n(len_b), a) ^ b
}

/// Below this length the tables are used without asking the CPU. Asking costs a CPUID, which
/// on a virtual machine traps to the hypervisor (6 µs on the build machine, see
/// [`has_sse42`]), and a name lookup checksums a header and one small shard, a few KiB, which
/// the tables do in a few µs: a fresh process's first lookup should pay neither. Large inputs
/// repay the question many times over.
pub const HW_MIN_LEN: usize = 64 * 1024;

/// CRC32C with the CPU's instruction, if it has one.
fn crc32c_hardware(crc: u32, data: &[u8]) -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_sse42() {
            // SAFETY: the CPU supports SSE 4.2, the only feature `crc32c_sse42` is compiled for.
            return Some(unsafe { crc32c_sse42(crc, data) });
        }
    }
    let _ = (crc, data);
    None
}

/// Whether the CPU has SSE 4.2, asked once per process with a single CPUID (leaf 1, ECX bit
/// 20). std's `is_x86_feature_detected!` scans every feature leaf: nine CPUIDs, each a trap to
/// the hypervisor on a virtual machine, 57 µs measured on the build machine against 6 µs for
/// one, paid by every process that lists accounts. SSE 4.2 needs no operating-system support
/// (no extended register state), so the CPUID bit is the whole answer.
#[cfg(target_arch = "x86_64")]
fn has_sse42() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0: not asked yet, 1: no, 2: yes.
    static KNOWN: AtomicU8 = AtomicU8::new(0);
    match KNOWN.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let yes = (std::arch::x86_64::__cpuid(1).ecx >> 20) & 1 == 1;
            KNOWN.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}

/// Bytes each of the three interleaved lanes of [`crc32c_sse42`] takes per round.
const LANE: usize = 4096;

/// `c * x^e mod P` in the reflected representation the register uses (bit 31 is `x^0`): the
/// carry-less product of two residues.
const fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m: u32 = 1 << 31;
    let mut p: u32 = 0;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `x^(8 n) mod P`: what appending `n` zero bytes multiplies a CRC register by.
const fn x_pow_8n(mut n: u64) -> u32 {
    let mut result: u32 = 1 << 31; // x^0
    let mut square: u32 = 1 << 23; // x^8
    while n != 0 {
        if n & 1 != 0 {
            result = mul_mod_p(square, result);
        }
        square = mul_mod_p(square, square);
        n >>= 1;
    }
    result
}

/// Byte-wise tables of the register after `LANE` zero bytes: the CRC is linear in its register,
/// so `shift(c) = T0[c & 0xff] ^ T1[(c >> 8) & 0xff] ^ T2[..] ^ T3[c >> 24]`.
#[allow(clippy::indexing_slicing)] // const evaluation: an out-of-range index fails the build
const fn make_lane_shift() -> [[u32; 256]; 4] {
    let k = x_pow_8n(LANE as u64);
    let mut t = [[0u32; 256]; 4];
    let mut j = 0;
    while j < 4 {
        let mut i = 0;
        while i < 256 {
            t[j][i] = mul_mod_p(k, (i as u32) << (8 * j));
            i += 1;
        }
        j += 1;
    }
    t
}

static LANE_SHIFT: [[u32; 256]; 4] = make_lane_shift();

/// The register `c` carried past `LANE` more bytes (as if they were zeros).
#[allow(clippy::indexing_slicing)] // every index is masked to 0..=255 into 256-entry tables
fn shift_lane(c: u32) -> u32 {
    let t = &LANE_SHIFT;
    t[0][(c & 0xff) as usize]
        ^ t[1][((c >> 8) & 0xff) as usize]
        ^ t[2][((c >> 16) & 0xff) as usize]
        ^ t[3][(c >> 24) as usize]
}

/// CRC32C with the SSE 4.2 `crc32` instruction (same polynomial, reflected, as the tables).
/// The instruction has a latency of three cycles and a throughput of one, so three independent
/// lanes run over consecutive `LANE`-byte blocks and are joined by the CRC's linearity
/// (`R(c, ABC) = shift(shift(R(c, A)) ^ R(0, B)) ^ R(0, C)`): about three times one lane's
/// speed on the megabytes jitd writes and enumeration checks.
///
/// # Safety
/// The CPU must support SSE 4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    };
    let mut crc = !crc;
    let mut rest = data;
    while let Some((round, tail)) = rest.split_at_checked(3 * LANE) {
        let (a, bc) = round.split_at(LANE);
        let (b, c) = bc.split_at(LANE);
        let (mut x, mut y, mut z) = (u64::from(crc), 0u64, 0u64);
        for ((wa, wb), wc) in a
            .chunks_exact(8)
            .zip(b.chunks_exact(8))
            .zip(c.chunks_exact(8))
        {
            x = _mm_crc32_u64(x, word(wa));
            y = _mm_crc32_u64(y, word(wb));
            z = _mm_crc32_u64(z, word(wc));
        }
        // The instruction's result fits in 32 bits; the high halves are always zero.
        crc = shift_lane(shift_lane(x as u32) ^ y as u32) ^ z as u32;
        rest = tail;
    }
    let mut x = u64::from(crc);
    let mut chunks = rest.chunks_exact(8);
    for c in &mut chunks {
        x = _mm_crc32_u64(x, word(c));
    }
    let mut crc = x as u32;
    for &b in chunks.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    !crc
}

/// The portable table-driven CRC32C (slicing by 8).
#[allow(clippy::indexing_slicing)] // every index is a u8 or masked to 0..=255 into 256-entry tables
fn crc32c_tables(crc: u32, data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut crc = !crc;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::crc32c;

    #[test]
    fn known_vectors() {
        // RFC 3720 appendix B.4 and the common check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(super::crc32c_tables(0, b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }

    /// The one-CPUID answer is std's (asked twice: the cached answer too).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn one_cpuid_agrees_with_std() {
        let std = std::arch::is_x86_feature_detected!("sse4.2");
        assert_eq!(super::has_sse42(), std);
        assert_eq!(super::has_sse42(), std);
    }

    /// The three lanes and their join agree with the tables around every boundary: below one
    /// round, at it, one byte either side, several rounds with a tail.
    #[test]
    fn interleaved_lanes_agree_with_the_tables() {
        let lane = super::LANE;
        let data: Vec<u8> = (0..(7 * 3 * lane + 50) as u32)
            .map(|i| (i.wrapping_mul(2_246_822_519).rotate_left(7) >> 11) as u8)
            .collect();
        for n in [
            0,
            5,
            8,
            lane,
            3 * lane - 1,
            3 * lane,
            3 * lane + 1,
            3 * lane + 9,
            6 * lane + 7,
            7 * 3 * lane,
            data.len(),
        ] {
            if let Some(hw) = super::crc32c_hardware(0, &data[..n]) {
                assert_eq!(hw, super::crc32c_tables(0, &data[..n]), "length {n}");
            }
        }
        // The shift tables are "append LANE zero bytes" to a register.
        let zeros = vec![0u8; lane];
        for c in [1u32, 0x8000_0000, 0xdead_beef, !0] {
            let mut r = c;
            for &b in &zeros {
                r = (r >> 8) ^ super::TABLES[0][((r ^ u32::from(b)) & 0xff) as usize];
            }
            assert_eq!(super::shift_lane(c), r, "register {c:#x}");
        }
    }

    #[test]
    fn hardware_and_tables_agree_below_and_above_the_switch() {
        let data: Vec<u8> = (0..3 * super::HW_MIN_LEN as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for n in [
            0,
            1,
            9,
            4096,
            super::HW_MIN_LEN - 1,
            super::HW_MIN_LEN,
            data.len(),
        ] {
            let tables = super::crc32c_tables(0, &data[..n]);
            assert_eq!(crc32c(&data[..n]), tables, "length {n}");
            if let Some(hw) = super::crc32c_hardware(0, &data[..n]) {
                assert_eq!(hw, tables, "instruction, length {n}");
            }
        }
        assert_eq!(
            super::crc32c_hardware(0, b"123456789").unwrap_or(0xE306_9283),
            0xE306_9283
        );
    }

    #[test]
    fn slicing_matches_bytewise_on_every_length() {
        let data: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..data.len() {
            let mut crc = !0u32;
            for &b in &data[..n] {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ super::POLY
                    } else {
                        crc >> 1
                    };
                }
            }
            assert_eq!(crc32c(&data[..n]), !crc, "length {n}");
            assert_eq!(
                super::crc32c_tables(0, &data[..n]),
                !crc,
                "tables, length {n}"
            );
        }
    }

    /// A CRC continued over a second piece, and two pieces' CRCs joined, equal the CRC of the
    /// whole, at every kind of split: empty pieces, inside a lane, across the switch to the
    /// instruction (both ways of computing the continuation are checked against the tables).
    #[test]
    fn append_and_combine_equal_the_whole() {
        let data: Vec<u8> = (0..(2 * super::HW_MIN_LEN + 777) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 17) as u8)
            .collect();
        let whole = crc32c(&data);
        for cut in [
            0,
            1,
            7,
            4096,
            12_289,
            super::HW_MIN_LEN - 1,
            super::HW_MIN_LEN,
            super::HW_MIN_LEN + 3,
            data.len() - 1,
            data.len(),
        ] {
            let (a, b) = data.split_at(cut);
            let (ca, cb) = (crc32c(a), crc32c(b));
            assert_eq!(super::crc32c_append(ca, b), whole, "append at {cut}");
            assert_eq!(
                super::crc32c_tables(ca, b),
                whole,
                "tables continued at {cut}"
            );
            if let Some(hw) = super::crc32c_hardware(ca, b) {
                assert_eq!(hw, whole, "instruction continued at {cut}");
            }
            assert_eq!(
                super::crc32c_combine(ca, cb, b.len() as u64),
                whole,
                "combine at {cut}"
            );
        }
        // Joining many pieces left to right is the CRC of their concatenation.
        let mut joined = 0u32;
        for piece in data.chunks(5_003) {
            joined = super::crc32c_combine(joined, crc32c(piece), piece.len() as u64);
        }
        assert_eq!(joined, whole);
    }
}
