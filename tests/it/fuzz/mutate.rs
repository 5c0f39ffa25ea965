//! Mutations of seed inputs.

use super::*;

// ---------------------------------------------------------------------------------
// Mutation

/// Offsets of bytes that look like MessagePack headers carrying a length or count.
pub(crate) fn length_fields(buf: &[u8]) -> Vec<usize> {
    buf.iter()
        .enumerate()
        .filter(|(_, b)| matches!(**b, 0x80..=0xbf | 0xc4..=0xc9 | 0xd9..=0xdf))
        .map(|(i, _)| i)
        .collect()
}

/// Applies 1 to 4 random mutations to `input` (bit flips, byte insertion and deletion,
/// splices from another seed, length-field bumps, truncation, duplication).
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &Seeds) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                let b = [
                    0x00,
                    0xc0,
                    0xc1,
                    0xff,
                    0x7f,
                    0x80,
                    0x90,
                    0xdd,
                    0xdf,
                    rng.byte(),
                ][rng.below(10)];
                input.insert(i, b);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                input.drain(i..i + n);
            }
            3 => {
                let other = seeds.any(rng);
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a + 1);
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[a..b].iter().copied());
                }
            }
            4 | 5 => {
                let fields = length_fields(input);
                if fields.is_empty() {
                    continue;
                }
                let at = fields[rng.below(fields.len())];
                bump_length(rng, input, at);
            }
            6 if len > 0 => input.truncate(rng.below(len)),
            7 if len > 0 => {
                let a = rng.below(len);
                let b = a + 1 + rng.below((len - a).min(64));
                let piece = input[a..b].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, piece);
            }
            _ => {
                let i = rng.below(len + 1);
                let piece: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.byte()).collect();
                input.splice(i..i, piece);
            }
        }
    }
}

/// Changes the length or count of the header at `at`: small steps, zero, the maximum,
/// or a switch to a wider header form declaring a huge size.
pub(crate) fn bump_length(rng: &mut Rng, buf: &mut [u8], at: usize) {
    let marker = buf[at];
    let width = match marker {
        0xc4 | 0xd9 | 0xc7 => 1,
        0xc5 | 0xda | 0xdc | 0xde | 0xc8 => 2,
        0xc6 | 0xdb | 0xdd | 0xdf | 0xc9 => 4,
        _ => 0,
    };
    if width == 0 {
        // A fix-form header: change the count in its low bits.
        let mask = if marker >= 0xa0 { 0x1f } else { 0x0f };
        let n = (marker & mask).wrapping_add([1, 0xff, 3, 7][rng.below(4)]) & mask;
        buf[at] = (marker & !mask) | n;
        return;
    }
    let Some(field) = buf.get_mut(at + 1..at + 1 + width) else {
        return;
    };
    let mut v: u64 = field.iter().fold(0, |a, &b| (a << 8) | u64::from(b));
    let max = if width == 4 {
        u64::from(u32::MAX)
    } else {
        (1 << (8 * width)) - 1
    };
    v = match rng.below(6) {
        0 => v.wrapping_add(1),
        1 => v.wrapping_sub(1),
        2 => 0,
        3 => max,
        4 => max / 2 + 1,
        _ => v.wrapping_mul(2).wrapping_add(1),
    } & max;
    for (i, b) in field.iter_mut().enumerate() {
        *b = (v >> (8 * (width - 1 - i))) as u8;
    }
}
