//! Whisper's mel filter bank, computed the way `librosa.filters.mel(sr=16000, n_fft=400,
//! n_mels=80)` does (Slaney mel scale, Slaney area normalisation, `float32` output), so the
//! converted model carries the same filters as openai-whisper's `mel_filters.npz`; and the
//! log-mel spectrogram Whisper's encoder reads, computed as openai-whisper's
//! `log_mel_spectrogram` does.

/// Whisper's audio sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// Whisper's STFT window length.
pub const N_FFT: usize = 400;
/// Samples between two spectrogram frames (10 ms).
pub const HOP_LENGTH: usize = 160;

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

/// The log-mel spectrogram of 16 kHz `samples` followed by `silence_after` zero samples, through
/// `filters` ([`mel_filters`] of [`N_FFT`], `n_mels` rows), as openai-whisper computes it: a
/// centred STFT (reflect padding, periodic Hann window, hop [`HOP_LENGTH`]) whose last frame is
/// dropped, power spectrum through the filters, `log10` clamped at 1e-10, floored 8 below its
/// maximum, then `(x + 4) / 4`. (Whisper pads its input with 30 s of silence; it is appended here,
/// in the one padded copy the STFT needs anyway.)
///
/// Row major: `n_mels` rows of `(samples.len() + silence_after) / HOP_LENGTH` frames. Needs more
/// than `N_FFT / 2` samples in all.
pub fn log_mel_spectrogram(samples: &[f32], silence_after: usize, filters: &[f32], n_mels: usize) -> Vec<f32> {
    let bins = n_bins(N_FFT);
    assert_eq!(filters.len(), n_mels * bins, "filters are not {n_mels} × {bins}");
    let pad = N_FFT / 2;
    let n = samples.len() + silence_after;
    assert!(n > pad, "{n} samples are too few for a centred STFT");
    let sample = |i: usize| samples.get(i).copied().unwrap_or(0.0);
    // torch.stft(center=True, pad_mode="reflect"): the edge sample is not repeated.
    let mut padded = Vec::with_capacity(n + 2 * pad);
    padded.extend((1..=pad).rev().map(sample));
    padded.extend_from_slice(samples);
    padded.resize(n + pad, 0.0);
    padded.extend((0..pad).map(|i| sample(n - 2 - i)));
    let frames = n / HOP_LENGTH;

    let window: Vec<f32> =
        (0..N_FFT).map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / N_FFT as f64).cos() as f32).collect();
    // Each filter is a triangle over a few bins: only those are multiplied.
    let spans: Vec<(usize, usize)> = filters
        .chunks(bins)
        .map(|row| {
            let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
            let last = row.iter().rposition(|&w| w != 0.0).map_or(0, |i| i + 1);
            (first, last.max(first))
        })
        .collect();
    let fft = realfft::RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
    let (mut input, mut spectrum) = (fft.make_input_vec(), fft.make_output_vec());
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0f32; bins];
    let mut mel = vec![0f32; n_mels * frames];
    for frame in 0..frames {
        let start = frame * HOP_LENGTH;
        for ((x, &s), &w) in input.iter_mut().zip(&padded[start..start + N_FFT]).zip(&window) {
            *x = s * w;
        }
        fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch).expect("buffers sized by the plan");
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.norm_sqr();
        }
        for (row, &(first, last)) in spans.iter().enumerate() {
            let weights = &filters[row * bins + first..row * bins + last];
            let energy: f32 = weights.iter().zip(&power[first..last]).map(|(w, p)| w * p).sum();
            mel[row * frames + frame] = energy.max(1e-10).log10();
        }
    }
    let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for x in &mut mel {
        *x = (x.max(max - 8.0) + 4.0) / 4.0;
    }
    mel
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

    fn tone(hz: f32, seconds: usize) -> Vec<f32> {
        (0..seconds * SAMPLE_RATE as usize)
            .map(|i| 0.5 * (std::f32::consts::TAU * hz * i as f32 / SAMPLE_RATE as f32).sin())
            .collect()
    }

    #[test]
    fn a_tone_peaks_in_the_filter_around_its_frequency() {
        let filters = mel_filters(SAMPLE_RATE, N_FFT, 80);
        let mel = log_mel_spectrogram(&tone(1000.0, 2), 0, &filters, 80);
        let frames = 2 * SAMPLE_RATE as usize / HOP_LENGTH;
        assert_eq!(mel.len(), 80 * frames);
        // A middle frame's loudest band is the one centred nearest 1 kHz.
        let frame = frames / 2;
        let column: Vec<f32> = (0..80).map(|row| mel[row * frames + frame]).collect();
        let loudest = (0..80).max_by(|&a, &b| column[a].total_cmp(&column[b])).unwrap();
        let centre = |row: usize| {
            let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(8000.0));
            mel_to_hz(lo + (hi - lo) * (row + 1) as f64 / 81.0)
        };
        assert!((centre(loudest) - 1000.0).abs() < 60.0, "band {loudest} centred at {} Hz", centre(loudest));
        // Whisper's dynamic range: nothing more than 8 (log10 units) below the peak, scaled by 1/4.
        let (min, max) = mel.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        assert!((max - min - 2.0).abs() < 1e-5, "range {min}..{max}");
    }

    /// faster-whisper 1.2.1's `FeatureExtractor()(x, padding=0)` (numpy) on one second of
    /// `0.3 sin(440 Hz) + 0.2 sin(3 kHz) · t`: entries at the edges, on both tones and at the floor.
    #[test]
    fn matches_faster_whispers_feature_extractor() {
        let n = SAMPLE_RATE as usize;
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(SAMPLE_RATE);
                (0.3 * (std::f64::consts::TAU * 440.0 * t).sin()
                    + 0.2 * (std::f64::consts::TAU * 3000.0 * t).sin() * (i as f64 / n as f64)) as f32
            })
            .collect();
        let mel = log_mel_spectrogram(&x, 0, &mel_filters(SAMPLE_RATE, N_FFT, 80), 80);
        assert_eq!(mel.len(), 80 * 100);
        let reference = [
            (0, 0, 0.872_354_4),
            (9, 50, 1.048_466_8),
            (10, 50, 1.237_813_6),
            (11, 3, 1.327_279_4),
            (45, 80, -0.672_720_55),
            (46, 99, -0.371_580_36),
            (79, 0, -0.192_615_99),
        ];
        for (row, frame, expected) in reference {
            let got = mel[row * 100 + frame];
            assert!((got - expected).abs() < 1e-4, "({row}, {frame}): {got} vs {expected}");
        }
    }

    #[test]
    fn silence_is_the_floor_everywhere() {
        let filters = mel_filters(SAMPLE_RATE, N_FFT, 80);
        let mel = log_mel_spectrogram(&[0.0; 3200], 0, &filters, 80);
        assert_eq!(mel.len(), 80 * 20);
        // Silence appended by the function is the same as silence in the samples.
        assert_eq!(log_mel_spectrogram(&[0.0; 1600], 1600, &filters, 80), mel);
        let mut padded = tone(440.0, 1);
        padded.resize(3 * SAMPLE_RATE as usize, 0.0);
        assert_eq!(
            log_mel_spectrogram(&tone(440.0, 1), 2 * SAMPLE_RATE as usize, &filters, 80),
            log_mel_spectrogram(&padded, 0, &filters, 80)
        );
        // log10(1e-10) = -10 → (-10 + 4) / 4.
        assert!(mel.iter().all(|&x| (x + 1.5).abs() < 1e-6), "{:?}", &mel[..4]);
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
