//! What the load generator sends: the operation mix, the key distribution
//! (uniform or zipfian) and a small seeded PRNG.

use clap::ValueEnum;

/// The operation mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    /// Only writes.
    Put,
    /// Only linearizable reads.
    Get,
    /// Only stale (local) reads, spread over every member.
    GetStale,
    /// Linearizable reads and writes in the ratio `--read-ratio`.
    Mixed,
}

impl WorkloadKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Put => "put",
            WorkloadKind::Get => "get",
            WorkloadKind::GetStale => "get-stale",
            WorkloadKind::Mixed => "mixed",
        }
    }
}

/// How keys are picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// A few hot keys: key i has weight 1/(i+1)^theta (`--zipf-theta`).
    Zipfian,
}

impl Distribution {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
        }
    }
}

/// One operation to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A linearizable read of key number `.0`.
    Get(u64),
    /// A stale read of key number `.0`.
    GetStale(u64),
    /// A write of key number `.0`.
    Put(u64),
}

impl Op {
    /// Whether the operation reads.
    pub fn is_read(self) -> bool {
        !matches!(self, Op::Put(_))
    }

    /// The key number.
    pub fn key(self) -> u64 {
        match self {
            Op::Get(k) | Op::GetStale(k) | Op::Put(k) => k,
        }
    }
}

/// The workload: mix, key space and key distribution. Shared read-only by
/// every worker; each worker brings its own [`Rng`].
#[derive(Clone, Debug)]
pub struct Workload {
    kind: WorkloadKind,
    read_ratio: f64,
    keys: KeySampler,
    key_prefix: String,
    key_width: usize,
}

impl Workload {
    /// A workload over `keys` keys named `{prefix}{number}`.
    pub fn new(
        kind: WorkloadKind,
        read_ratio: f64,
        keys: KeySampler,
        key_prefix: String,
    ) -> Workload {
        let key_width = keys.len().saturating_sub(1).to_string().len();
        Workload {
            kind,
            read_ratio,
            keys,
            key_prefix,
            key_width,
        }
    }

    /// The next operation.
    pub fn next_op(&self, rng: &mut Rng) -> Op {
        let key = self.keys.sample(rng);
        match self.kind {
            WorkloadKind::Put => Op::Put(key),
            WorkloadKind::Get => Op::Get(key),
            WorkloadKind::GetStale => Op::GetStale(key),
            WorkloadKind::Mixed if rng.next_f64() < self.read_ratio => Op::Get(key),
            WorkloadKind::Mixed => Op::Put(key),
        }
    }

    /// The name of key number `index` (zero-padded so keys sort by number).
    pub fn key_name(&self, index: u64) -> String {
        format!(
            "{}{:0width$}",
            self.key_prefix,
            index,
            width = self.key_width
        )
    }

    /// The number of keys.
    pub fn key_count(&self) -> u64 {
        self.keys.len()
    }
}

/// A random alphanumeric value of `size` bytes.
pub fn random_value(rng: &mut Rng, size: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// Picks key numbers in `0..n`.
#[derive(Clone, Debug)]
pub enum KeySampler {
    /// Every key equally likely.
    Uniform {
        /// The number of keys.
        n: u64,
    },
    /// Zipfian over ranks: key 0 is the hottest.
    Zipfian(Zipfian),
}

impl KeySampler {
    /// A sampler for `n` keys (at least one).
    pub fn new(distribution: Distribution, n: u64, theta: f64) -> KeySampler {
        let n = n.max(1);
        match distribution {
            Distribution::Uniform => KeySampler::Uniform { n },
            Distribution::Zipfian => KeySampler::Zipfian(Zipfian::new(n, theta)),
        }
    }

    /// The next key number.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            KeySampler::Uniform { n } => rng.below(*n),
            KeySampler::Zipfian(z) => z.sample(rng),
        }
    }

    /// The number of keys.
    pub fn len(&self) -> u64 {
        match self {
            KeySampler::Uniform { n } => *n,
            KeySampler::Zipfian(z) => z.n,
        }
    }
}

/// An exact zipfian sampler: rank `i` (0-based) has probability
/// proportional to `1 / (i + 1)^theta`. Rejection-inversion sampling
/// (Hörmann and Derflinger, "Rejection-inversion to generate variates from
/// monotone discrete distributions", 1996): O(1) per sample and no O(n)
/// set-up, so large key spaces start at once.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipfian {
    /// A sampler over `n` ranks (at least one) with skew `theta > 0`.
    pub fn new(n: u64, theta: f64) -> Zipfian {
        let n = n.max(1);
        let theta = if theta.is_finite() && theta > 0.0 {
            theta
        } else {
            0.99
        };
        let mut z = Zipfian {
            n,
            theta,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(n as f64 + 0.5);
        z.s = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// The exact probability of rank `i`.
    #[cfg(test)]
    pub fn probability(&self, i: u64) -> f64 {
        let zeta: f64 = (1..=self.n).map(|k| (k as f64).powf(-self.theta)).sum();
        ((i + 1) as f64).powf(-self.theta) / zeta
    }

    /// The next rank in `0..n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = ((x + 0.5) as u64).clamp(1, self.n);
            let kf = k as f64;
            if kf - x <= self.s || u >= self.h_integral(kf + 0.5) - self.h(kf) {
                return k - 1;
            }
        }
    }

    /// `h(x) = x^-theta`.
    fn h(&self, x: f64) -> f64 {
        (-self.theta * x.ln()).exp()
    }

    /// An antiderivative of `h`: `(x^(1-theta) - 1) / (1 - theta)`, also
    /// for `theta = 1`.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        expm1_over_x((1.0 - self.theta) * log_x) * log_x
    }

    /// The inverse of [`Zipfian::h_integral`].
    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.theta)).max(-1.0);
        (ln1p_over_x(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, accurate near 0.
fn ln1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, accurate near 0.
fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// SplitMix64: small, fast and good enough to pick keys; seeded so a run can
/// be repeated.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        for _ in 0..10_000 {
            let f = a.next_f64();
            assert!((0.0..1.0).contains(&f));
            assert!(a.below(10) < 10);
        }
    }

    #[test]
    fn uniform_covers_the_key_space_evenly() {
        let sampler = KeySampler::new(Distribution::Uniform, 10, 0.99);
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[sampler.sample(&mut rng) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn zipfian_matches_its_distribution() {
        let n = 1000;
        let z = Zipfian::new(n, 0.99);
        let mut rng = Rng::new(42);
        let samples = 400_000;
        let mut counts = vec![0u64; n as usize];
        for _ in 0..samples {
            let k = z.sample(&mut rng);
            assert!(k < n);
            counts[k as usize] += 1;
        }
        // The hottest ranks appear about as often as the formula says.
        for rank in [0u64, 1, 2, 9] {
            let expected = z.probability(rank) * samples as f64;
            let got = counts[rank as usize] as f64;
            assert!(
                (got - expected).abs() / expected < 0.1,
                "rank {rank}: got {got}, expected {expected:.0}"
            );
        }
        // Skewed: the top 1% of keys take far more than 1% of the samples,
        // and popularity falls with rank.
        let top: u64 = counts[..10].iter().sum();
        assert!(top as f64 > 0.25 * samples as f64, "top 10 got {top}");
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
        // Every part of the key space is still reached.
        assert!(counts[900..].iter().sum::<u64>() > 0);
    }

    #[test]
    fn zipfian_is_exact_for_other_skews() {
        for theta in [0.5, 1.0, 1.5] {
            let z = Zipfian::new(50, theta);
            let mut rng = Rng::new(9);
            let samples = 200_000;
            let mut counts = [0u64; 50];
            for _ in 0..samples {
                counts[z.sample(&mut rng) as usize] += 1;
            }
            for rank in [0u64, 1, 4] {
                let expected = z.probability(rank) * samples as f64;
                let got = counts[rank as usize] as f64;
                assert!(
                    (got - expected).abs() / expected < 0.05,
                    "theta {theta} rank {rank}: got {got}, expected {expected:.0}"
                );
            }
        }
        // A huge key space needs no set-up time and stays in range.
        let z = Zipfian::new(100_000_000, 0.99);
        let mut rng = Rng::new(2);
        assert!((0..10_000).all(|_| z.sample(&mut rng) < 100_000_000));
    }

    #[test]
    fn zipfian_with_one_or_two_keys() {
        let mut rng = Rng::new(3);
        let one = Zipfian::new(1, 0.99);
        let two = Zipfian::new(2, 0.99);
        for _ in 0..1000 {
            assert_eq!(one.sample(&mut rng), 0);
            assert!(two.sample(&mut rng) < 2);
        }
    }

    #[test]
    fn mixed_workload_follows_the_read_ratio() {
        let w = Workload::new(
            WorkloadKind::Mixed,
            0.9,
            KeySampler::new(Distribution::Uniform, 100, 0.99),
            "k".into(),
        );
        let mut rng = Rng::new(5);
        let reads = (0..100_000)
            .filter(|_| w.next_op(&mut rng).is_read())
            .count();
        assert!((89_000..91_000).contains(&reads), "{reads}");
    }

    #[test]
    fn key_names_are_zero_padded() {
        let w = Workload::new(
            WorkloadKind::Put,
            0.0,
            KeySampler::new(Distribution::Uniform, 1000, 0.99),
            "bench-".into(),
        );
        assert_eq!(w.key_name(7), "bench-007");
        assert_eq!(w.key_name(999), "bench-999");
        let mut rng = Rng::new(1);
        let v = random_value(&mut rng, 64);
        assert_eq!(v.len(), 64);
        assert!(v.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
