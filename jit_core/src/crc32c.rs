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
    if data.len() >= HW_MIN_LEN {
        if let Some(crc) = crc32c_hardware(data) {
            return crc;
        }
    }
    crc32c_tables(data)
}

/// Below this length the tables are used without asking the CPU. Asking costs a CPUID, which
/// on a virtual machine traps to the hypervisor (6 µs on the build machine, see
/// [`has_sse42`]), and a name lookup checksums a header and one small shard, a few KiB, which
/// the tables do in a few µs: a fresh process's first lookup should pay neither. Large inputs
/// repay the question many times over.
pub const HW_MIN_LEN: usize = 64 * 1024;

/// CRC32C with the CPU's instruction, if it has one.
fn crc32c_hardware(data: &[u8]) -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_sse42() {
            // SAFETY: the CPU supports SSE 4.2, the only feature `crc32c_sse42` is compiled for.
            return Some(unsafe { crc32c_sse42(data) });
        }
    }
    let _ = data;
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

/// CRC32C with the SSE 4.2 `crc32` instruction (same polynomial, reflected, as the tables).
///
/// # Safety
/// The CPU must support SSE 4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut crc = u64::from(!0u32);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(w));
    }
    // The instruction's result fits in 32 bits; the high half of `crc` is always zero.
    let mut crc = crc as u32;
    for &b in chunks.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    !crc
}

/// The portable table-driven CRC32C (slicing by 8).
#[allow(clippy::indexing_slicing)] // every index is a u8 or masked to 0..=255 into 256-entry tables
fn crc32c_tables(data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut crc = !0u32;
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
        assert_eq!(super::crc32c_tables(b"123456789"), 0xE306_9283);
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
            let tables = super::crc32c_tables(&data[..n]);
            assert_eq!(crc32c(&data[..n]), tables, "length {n}");
            if let Some(hw) = super::crc32c_hardware(&data[..n]) {
                assert_eq!(hw, tables, "instruction, length {n}");
            }
        }
        assert_eq!(
            super::crc32c_hardware(b"123456789").unwrap_or(0xE306_9283),
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
            assert_eq!(super::crc32c_tables(&data[..n]), !crc, "tables, length {n}");
        }
    }
}
