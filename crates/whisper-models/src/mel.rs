//! Whisper's mel filter bank, computed the way `librosa.filters.mel(sr=16000, n_fft=400,
//! n_mels=80)` does (Slaney mel scale, Slaney area normalisation, `float32` output), so the
//! converted model carries the same filters as openai-whisper's `mel_filters.npz`.

/// Whisper's audio sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// Whisper's STFT window length.
pub const N_FFT: usize = 400;

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;

fn min_log_mel() -> f64 {
    MIN_LOG_HZ / F_SP
}

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Slaney mel of a frequency in Hz: linear below 1 kHz, logarithmic above.
pub fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ { min_log_mel() + (hz / MIN_LOG_HZ).ln() / log_step() } else { hz / F_SP }
}

/// Inverse of [`hz_to_mel`].
pub fn mel_to_hz(mel: f64) -> f64 {
    if mel >= min_log_mel() { MIN_LOG_HZ * (log_step() * (mel - min_log_mel())).exp() } else { F_SP * mel }
}

/// Number of frequency bins of a real FFT of `n_fft` samples.
pub fn n_bins(n_fft: usize) -> usize {
    n_fft / 2 + 1
}

/// Triangular mel filters spanning 0 Hz to Nyquist, row major: `n_mels` rows of
/// [`n_bins`]`(n_fft)` weights.
///
/// Follows librosa step by step (`rfftfreq` bin centres, `linspace` in mel, weights stored as
/// `float32` before the `float64` normalisation), which makes the result bit-identical to it.
pub fn mel_filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let sr = f64::from(sample_rate);
    let bins = n_bins(n_fft);
    // np.fft.rfftfreq(n_fft, 1 / sr)
    let bin_step = 1.0 / (n_fft as f64 * (1.0 / sr));
    let fft_freqs: Vec<f64> = (0..bins).map(|k| k as f64 * bin_step).collect();

    // np.linspace(hz_to_mel(0), hz_to_mel(sr / 2), n_mels + 2), then back to Hz.
    let n_points = n_mels + 2;
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let step = (hi - lo) / (n_points - 1) as f64;
    let mel_f: Vec<f64> = (0..n_points)
        .map(|i| {
            let mel = if i + 1 == n_points { hi } else { i as f64 * step + lo };
            mel_to_hz(mel)
        })
        .collect();

    let mut weights = Vec::with_capacity(n_mels * bins);
    for i in 0..n_mels {
        let (left, centre, right) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
        let enorm = 2.0 / (right - left);
        weights.extend(fft_freqs.iter().map(|&f| {
            let lower = -(left - f) / (centre - left);
            let upper = (right - f) / (right - centre);
            // np.maximum(0, x) keeps x on a tie, so a -0.0 survives as in librosa.
            let w = lower.min(upper);
            let w = if w >= 0.0 { w as f32 } else { 0.0 };
            (f64::from(w) * enorm) as f32
        }));
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from librosa 0.11's `filters.mel` code run under numpy 2.4
    // (sr 16000, n_fft 400, n_mels 80), as f32 bit patterns.
    const REFERENCE_BITS: [(usize, usize, u32); 6] = [
        (0, 1, 1_019_980_964),
        (1, 2, 1_018_912_149),
        (79, 195, 991_104_163),
        (0, 0, 0x8000_0000),
        (0, 2, 0),
        (79, 200, 0),
    ];

    #[test]
    fn matches_librosa_entries() {
        let w = mel_filters(SAMPLE_RATE, N_FFT, 80);
        assert_eq!(w.len(), 80 * 201);
        for (row, col, bits) in REFERENCE_BITS {
            assert_eq!(w[row * 201 + col].to_bits(), bits, "entry ({row}, {col}) = {}", w[row * 201 + col]);
        }
    }

    #[test]
    fn matches_librosa_row_sums() {
        let w = mel_filters(SAMPLE_RATE, N_FFT, 80);
        let row_sum = |r: usize| w[r * 201..(r + 1) * 201].iter().map(|&x| f64::from(x)).sum();
        let reference: [(usize, f64); 5] = [
            (0, 0.024_862_594_902_515_41),
            (1, 0.024_862_593_039_870_262),
            (10, 0.024_862_593_039_870_262),
            (40, 0.026_664_860_546_588_898),
            (79, 0.024_925_339_967_012_405),
        ];
        for (row, expected) in reference {
            let got: f64 = row_sum(row);
            assert!((got - expected).abs() < 1e-8, "row {row}: {got} vs {expected}");
        }
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        assert!((total - 1.999_024_092_387_117).abs() < 1e-6, "total {total}");
        assert_eq!(w.iter().filter(|&&x| x != 0.0).count(), 391);
        assert!(w.iter().all(|&x| x >= 0.0));
    }

    #[test]
    fn is_bit_identical_to_librosa() {
        // FNV-1a over the little-endian bytes of librosa's whole 80 × 201 float32 matrix.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in mel_filters(SAMPLE_RATE, N_FFT, 80).iter().flat_map(|x| x.to_le_bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(hash, 0x173a_8442_ad00_0426);
    }

    #[test]
    fn mel_scale_round_trips_and_is_slaney() {
        assert_eq!(hz_to_mel(0.0), 0.0);
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(6400.0) - 42.0).abs() < 1e-9);
        for hz in [0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
        }
    }
}
