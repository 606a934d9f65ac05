//! Python's `random` module, as far as GLEU needs it: the Mersenne Twister (MT19937) seeded
//! from an integer as `random.seed(n)` seeds it, and `random.random()`. JFLEG's GLEU samples
//! one reference per sentence with it under fixed seeds, so neko draws the same references.

const N: usize = 624;
const M: usize = 397;

/// A Mersenne Twister in the state `random.seed(n)` leaves it.
pub struct PyRandom {
    state: [u32; N],
    next: usize,
}

impl PyRandom {
    /// `random.seed(seed)` for a non-negative integer: the generator keyed by the seed's 32-bit
    /// words, least significant first (`[0]` for 0).
    pub fn seeded(seed: u64) -> Self {
        let key: Vec<u32> = match seed {
            0..=0xFFFF_FFFF => vec![seed as u32],
            _ => vec![seed as u32, (seed >> 32) as u32],
        };
        let mut mt = PyRandom::from_word(19_650_218);
        mt.mix_key(&key);
        mt
    }

    /// `init_genrand`.
    fn from_word(s: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = s;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        PyRandom { state, next: N }
    }

    /// `init_by_array`.
    fn mix_key(&mut self, key: &[u32]) {
        let mt = &mut self.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1];
            mt[i] = (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1];
            mt[i] =
                (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
    }

    fn twist(&mut self) {
        let mt = &mut self.state;
        for k in 0..N {
            let y = (mt[k] & 0x8000_0000) | (mt[(k + 1) % N] & 0x7FFF_FFFF);
            let odd = if y & 1 == 1 { 0x9908_B0DF } else { 0 };
            mt[k] = mt[(k + M) % N] ^ (y >> 1) ^ odd;
        }
        self.next = 0;
    }

    /// `genrand_uint32`.
    fn next_u32(&mut self) -> u32 {
        if self.next >= N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9D2C_5680;
        y ^= (y << 15) & 0xEFC6_0000;
        y ^ (y >> 18)
    }

    /// `random.random()`: 53 random bits in [0, 1).
    pub fn random(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_what_python_draws() {
        // python3 -c 'import random; random.seed(S); print([random.random() for _ in range(3)])'
        let cases: [(u64, [f64; 3]); 3] = [
            (
                0,
                [0.8444218515250481, 0.7579544029403025, 0.420571580830845],
            ),
            (
                101,
                [0.5811521325045647, 0.1947544955341367, 0.9652511070611112],
            ),
            (
                (1 << 40) + 5,
                [0.5043802970418443, 0.2686044399723282, 0.9257865475671585],
            ),
        ];
        for (seed, expected) in cases {
            let mut r = PyRandom::seeded(seed);
            let got: Vec<f64> = (0..3).map(|_| r.random()).collect();
            assert_eq!(got, expected, "seed {seed}");
        }
        // Past the first 624 words the state is twisted again.
        let mut r = PyRandom::seeded(101);
        let late = (0..701).map(|_| r.random()).last();
        assert_eq!(late, Some(0.9188265105331459));
    }
}
