//! Compact vector encodings and their kernels: int8 codes for walking the graph, f16 for
//! rescoring.
//!
//! A cold 384-d f32 vector is 1.5 KiB, 24 cache lines: a graph walk that reads a thousand of
//! them is bound by memory, not arithmetic. The walk therefore uses int8 codes (384 bytes,
//! one global scale, symmetric, clipped at `code_range`), and the best `ef` candidates are
//! rescored against the f16 copy (768 bytes, relative error ~5e-4 per component, ~1e-5 on
//! an inner product, well below the gap between neighbours). Kernels are chosen at run time
//! like the f32 one: AVX-512BW / AVX2 (+F16C), or portable loops that vectorize.

use std::sync::OnceLock;

/// Largest magnitude of an int8 code.
pub const CODE_MAX: f32 = 127.0;

/// Inner product of two int8 codes.
pub type DotI8Fn = fn(&[i8], &[i8]) -> i32;
/// Inner product of an f32 query with an f16 vector (given as raw bits).
pub type DotF16Fn = fn(&[f32], &[u16]) -> f32;

/// The int8 and f16 kernels chosen for this CPU.
#[derive(Clone, Copy)]
pub struct QuantKernels {
    /// int8 x int8 inner product.
    pub dot_i8: DotI8Fn,
    /// f32 x f16 inner product.
    pub dot_f16: DotF16Fn,
    /// Name of the instruction set used.
    pub name: &'static str,
}

/// The kernels for this CPU, detected once.
pub fn quant_kernels() -> QuantKernels {
    static K: OnceLock<QuantKernels> = OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let forced_scalar = std::env::var_os("AKOSHA_ANN_SCALAR").is_some();
            let no512 = std::env::var_os("AKOSHA_ANN_NO_AVX512").is_some();
            if !forced_scalar && !no512 && is_x86_feature_detected!("avx512bw") {
                return QuantKernels {
                    dot_i8: x86::dot_i8_avx512,
                    dot_f16: x86::dot_f16_avx512,
                    name: "avx512bw",
                };
            }
            if !forced_scalar
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                return QuantKernels {
                    dot_i8: x86::dot_i8_avx2,
                    dot_f16: x86::dot_f16_avx2,
                    name: "avx2-f16c",
                };
            }
        }
        QuantKernels {
            dot_i8: dot_i8_scalar,
            dot_f16: dot_f16_scalar,
            name: "scalar",
        }
    })
}

/// Encodes `v` as int8 codes with `scale` codes per unit (values beyond ±127/scale clip).
pub fn quantize(v: &[f32], scale: f32, out: &mut [i8]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x * scale).round().clamp(-CODE_MAX, CODE_MAX) as i8;
    }
}

/// f32 to IEEE half precision bits, rounding to nearest even.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let (half, rem, mid) = (m >> shift, m & ((1 << shift) - 1), 1u32 << (shift - 1));
        let r = if rem > mid || (rem == mid && half & 1 == 1) {
            half + 1
        } else {
            half
        };
        return sign | r as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let r = if rem > 0x1000 || (rem == 0x1000 && half & 1 == 1) {
        half + 1
    } else {
        half
    };
    sign | r as u16
}

/// IEEE half precision bits to f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    if exp == 0 {
        let v = man as f32 * (1.0 / 16_777_216.0);
        return if sign != 0 { -v } else { v };
    }
    let bits = if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// Portable int8 kernel: eight independent i32 accumulators.
pub fn dot_i8_scalar(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let mut acc = [0i32; 8];
    let (ca, cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] as i32 * y[j] as i32;
        }
    }
    let tail: i32 = ra.iter().zip(rb).map(|(x, y)| *x as i32 * *y as i32).sum();
    acc.iter().sum::<i32>() + tail
}

/// Portable f32 x f16 kernel.
pub fn dot_f16_scalar(q: &[f32], h: &[u16]) -> f32 {
    let n = q.len().min(h.len());
    let mut acc = [0.0f32; 8];
    let (cq, ch) = (q[..n].chunks_exact(8), h[..n].chunks_exact(8));
    let (rq, rh) = (cq.remainder(), ch.remainder());
    for (x, y) in cq.zip(ch) {
        for j in 0..8 {
            acc[j] += x[j] * f16_to_f32(y[j]);
        }
    }
    let tail: f32 = rq.iter().zip(rh).map(|(x, y)| x * f16_to_f32(*y)).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Only installed after avx512bw was detected.
    pub(super) fn dot_i8_avx512(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: selected only when the CPU reports avx512bw (which implies avx512f).
        unsafe { dot_i8_avx512_impl(a, b) }
    }

    /// Only installed after avx512bw was detected.
    pub(super) fn dot_f16_avx512(q: &[f32], h: &[u16]) -> f32 {
        // SAFETY: selected only when the CPU reports avx512bw (which implies avx512f).
        unsafe { dot_f16_avx512_impl(q, h) }
    }

    /// Only installed after avx2, fma and f16c were detected.
    pub(super) fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: selected only when the CPU reports avx2.
        unsafe { dot_i8_avx2_impl(a, b) }
    }

    /// Only installed after avx2, fma and f16c were detected.
    pub(super) fn dot_f16_avx2(q: &[f32], h: &[u16]) -> f32 {
        // SAFETY: selected only when the CPU reports avx2, fma and f16c.
        unsafe { dot_f16_avx2_impl(q, h) }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn dot_i8_avx512_impl(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = 0;
        // SAFETY: each load reads 32 bytes at offset i with i + 32 <= n (64 for the pair).
        unsafe {
            while i + 64 <= n {
                let x = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pa.add(i) as *const __m256i));
                let y = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pb.add(i) as *const __m256i));
                acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(x, y));
                let x = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pa.add(i + 32) as *const __m256i));
                let y = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pb.add(i + 32) as *const __m256i));
                acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(x, y));
                i += 64;
            }
            while i + 32 <= n {
                let x = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pa.add(i) as *const __m256i));
                let y = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pb.add(i) as *const __m256i));
                acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(x, y));
                i += 32;
            }
        }
        let mut sum = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
        while i < n {
            sum += a[i] as i32 * b[i] as i32;
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn dot_f16_avx512_impl(q: &[f32], h: &[u16]) -> f32 {
        let n = q.len().min(h.len());
        let (pq, ph) = (q.as_ptr(), h.as_ptr());
        let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        // SAFETY: each load reads 16 lanes at offset i with i + 16 <= n (32 for the pair).
        unsafe {
            while i + 32 <= n {
                let y = _mm512_cvtph_ps(_mm256_loadu_si256(ph.add(i) as *const __m256i));
                acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(i)), y, acc0);
                let y = _mm512_cvtph_ps(_mm256_loadu_si256(ph.add(i + 16) as *const __m256i));
                acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(i + 16)), y, acc1);
                i += 32;
            }
            while i + 16 <= n {
                let y = _mm512_cvtph_ps(_mm256_loadu_si256(ph.add(i) as *const __m256i));
                acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(i)), y, acc0);
                i += 16;
            }
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        while i < n {
            sum += q[i] * super::f16_to_f32(h[i]);
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2")]
    unsafe fn dot_i8_avx2_impl(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        // SAFETY: each load reads 16 bytes at offset i with i + 16 <= n (32 for the pair).
        unsafe {
            while i + 32 <= n {
                let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i) as *const __m128i));
                let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i) as *const __m128i));
                acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(x, y));
                let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16) as *const __m128i));
                let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i + 16) as *const __m128i));
                acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(x, y));
                i += 32;
            }
            while i + 16 <= n {
                let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i) as *const __m128i));
                let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i) as *const __m128i));
                acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(x, y));
                i += 16;
            }
        }
        let v = _mm256_add_epi32(acc0, acc1);
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        let mut sum = _mm_cvtsi128_si32(s);
        while i < n {
            sum += a[i] as i32 * b[i] as i32;
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_f16_avx2_impl(q: &[f32], h: &[u16]) -> f32 {
        let n = q.len().min(h.len());
        let (pq, ph) = (q.as_ptr(), h.as_ptr());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY: each load reads 8 lanes at offset i with i + 8 <= n (16 for the pair).
        unsafe {
            while i + 16 <= n {
                let y = _mm256_cvtph_ps(_mm_loadu_si128(ph.add(i) as *const __m128i));
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i)), y, acc0);
                let y = _mm256_cvtph_ps(_mm_loadu_si128(ph.add(i + 8) as *const __m128i));
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i + 8)), y, acc1);
                i += 16;
            }
            while i + 8 <= n {
                let y = _mm256_cvtph_ps(_mm_loadu_si128(ph.add(i) as *const __m128i));
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i)), y, acc0);
                i += 8;
            }
        }
        let v = _mm256_add_ps(acc0, acc1);
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        let mut sum = _mm_cvtss_f32(s);
        while i < n {
            sum += q[i] * super::f16_to_f32(h[i]);
            i += 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_round_trips_and_rounds_to_nearest() {
        for x in [
            0.0f32, -0.0, 1.0, -2.5, 0.1, 1e-5, -3e-7, 6.1e-5, 65504.0, 1e6, 0.33333,
        ] {
            let back = f16_to_f32(f32_to_f16(x));
            let tol = if x.abs() < 6.1e-5 {
                6e-8
            } else {
                x.abs() * 4.9e-4
            };
            if x.abs() > 65504.0 {
                assert!(back.is_infinite());
            } else {
                assert!((back - x).abs() <= tol, "{x} -> {back}");
            }
        }
        for h in 0u16..=0xffff {
            let f = f16_to_f32(h);
            if !f.is_nan() {
                assert_eq!(f32_to_f16(f), h, "bits {h:#x}");
            }
        }
    }

    #[test]
    fn kernels_agree_with_scalar_at_every_length() {
        let k = quant_kernels();
        for n in [0usize, 1, 15, 16, 17, 31, 33, 64, 100, 384, 385] {
            let a: Vec<i8> = (0..n)
                .map(|i| ((i * 37 % 255) as i32 - 127) as i8)
                .collect();
            let b: Vec<i8> = (0..n)
                .map(|i| ((i * 91 % 255) as i32 - 127) as i8)
                .collect();
            assert_eq!(
                (k.dot_i8)(&a, &b),
                dot_i8_scalar(&a, &b),
                "{} n={n}",
                k.name
            );
            let q: Vec<f32> = (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) / 9.0).collect();
            let h: Vec<u16> = (0..n)
                .map(|i| f32_to_f16(((i * 7 % 11) as f32 - 5.0) / 7.0))
                .collect();
            let (want, got) = (dot_f16_scalar(&q, &h), (k.dot_f16)(&q, &h));
            assert!(
                (want - got).abs() < 1e-4 * (1.0 + want.abs()),
                "{} n={n}: {got} vs {want}",
                k.name
            );
        }
    }

    #[test]
    fn quantize_clips_and_rounds() {
        let mut out = [0i8; 4];
        quantize(&[0.0, 0.5, -2.0, 0.011], 100.0, &mut out);
        assert_eq!(out, [0, 50, -127, 1]);
    }
}
