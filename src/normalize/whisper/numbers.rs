//! A port of openai-whisper's `EnglishNumberNormalizer` (whisper/normalizers/english.py, MIT):
//! spelled-out numbers become digits (`twenty one` → `21`, `one oh one` → `101`,
//! `two point five million dollars` → `$2500000`), with ordinals and plurals kept as suffixes,
//! currency words turned into symbols, and `one(s)` left as words for readability.
//!
//! The Python keeps a pending `value` that is either an `int` or a `str` and switches between
//! the two on purpose (`str` means "concatenate digits"); [`Value`] keeps that distinction.
//! Integers are unbounded in Python, so [`Nat`] is a decimal string with the few operations
//! the algorithm uses, and `Fraction(str)` is emulated for the strings it can meet.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::{Captures, Regex};

use crate::normalize::pychar;

/// A non-negative integer of any size, as decimal digits without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Nat(String);

impl Nat {
    fn from_u64(n: u64) -> Self {
        Nat(n.to_string())
    }

    /// From decimal digits of any script (Python's `int(str)` accepts them all).
    fn from_digits(s: &str) -> Self {
        let ascii: String = s
            .chars()
            .filter_map(pychar::decimal_value)
            .map(|d| char::from(b'0' + d as u8))
            .collect();
        let trimmed = ascii.trim_start_matches('0');
        Nat(if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.into()
        })
    }

    fn is_zero(&self) -> bool {
        self.0 == "0"
    }

    /// `self % 10^k` for small `k`.
    fn rem_pow10(&self, k: usize) -> u64 {
        let s = &self.0[self.0.len().saturating_sub(k)..];
        s.parse().unwrap_or(0)
    }

    /// `self // 10^k * 10^k`.
    fn floor_pow10(&self, k: usize) -> Nat {
        if self.0.len() <= k {
            return Nat("0".into());
        }
        let keep = &self.0[..self.0.len() - k];
        Nat(format!("{keep}{}", "0".repeat(k)))
    }

    fn mul_pow10(&self, k: usize) -> Nat {
        if self.is_zero() {
            self.clone()
        } else {
            Nat(format!("{}{}", self.0, "0".repeat(k)))
        }
    }

    fn add(&self, other: &Nat) -> Nat {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
        let (mut i, mut j, mut carry) = (a.len(), b.len(), 0u8);
        while i > 0 || j > 0 || carry > 0 {
            let mut d = carry;
            if i > 0 {
                i -= 1;
                d += a[i] - b'0';
            }
            if j > 0 {
                j -= 1;
                d += b[j] - b'0';
            }
            out.push(b'0' + d % 10);
            carry = d / 10;
        }
        out.reverse();
        Nat(String::from_utf8(out).expect("ascii digits"))
    }
}

impl std::fmt::Display for Nat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number being built: an integer (added to) or a digit string (appended to).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Int(Nat),
    Str(String),
}

impl Value {
    fn int(n: u64) -> Self {
        Value::Int(Nat::from_u64(n))
    }

    fn text(&self) -> String {
        match self {
            Value::Int(n) => n.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
}

/// Python's `str(value or "")`: `None` and integer zero are both falsy.
fn or_empty(v: &Option<Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::Int(n)) if n.is_zero() => String::new(),
        Some(v) => v.text(),
    }
}

/// `Fraction(s) * 10^k` when `s` parses as a fraction and the product is an integer:
/// `Some(Some(n))`; `Some(None)` when it parses but is not integral; `None` when it does not
/// parse (Python's `ValueError`). Only the decimal forms our values take are accepted:
/// `digits`, `digits.`, `.digits`, `digits.digits`.
fn fraction_times_pow10(s: &str, k: usize) -> Option<Option<Nat>> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let all_digits = |t: &str| t.chars().all(pychar::is_decimal);
    let starts_ok = int.chars().next().is_some_and(pychar::is_decimal)
        || frac.is_some_and(|f| f.chars().next().is_some_and(pychar::is_decimal));
    if !starts_ok || !all_digits(int) || !frac.is_none_or(all_digits) {
        return None;
    }
    let frac: String = frac
        .unwrap_or("")
        .chars()
        .filter_map(pychar::decimal_value)
        .map(|d| char::from(b'0' + d as u8))
        .collect();
    let frac = frac.trim_end_matches('0');
    if frac.chars().count() > k {
        return Some(None);
    }
    let digits = Nat::from_digits(&format!("{}{frac}", Nat::from_digits(int)));
    Some(Some(digits.mul_pow10(k - frac.len())))
}

/// `Fraction(s).denominator == 1` for a string matching `^\d+(\.\d+)?$`: the integer, if it is one.
fn integral(s: &str) -> Option<Nat> {
    fraction_times_pow10(s, 0).flatten()
}

/// `re.match(r"^\d+(\.\d+)?$", s)`: digits, optionally a point and more digits.
fn is_numeric(s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.chars().all(pychar::is_decimal);
    match s.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(s),
    }
}

/// The word tables of `EnglishNumberNormalizer.__init__`.
struct Words {
    zeros: HashSet<&'static str>,
    ones: HashMap<String, u64>,
    ones_suffixed: HashMap<String, (u64, &'static str)>,
    tens: HashMap<String, u64>,
    tens_suffixed: HashMap<String, (u64, &'static str)>,
    /// Multipliers as powers of ten.
    multipliers: HashMap<String, usize>,
    multipliers_suffixed: HashMap<String, (usize, &'static str)>,
    decimals: HashSet<String>,
    preceding_prefixers: HashMap<&'static str, &'static str>,
    following_prefixers: HashMap<&'static str, &'static str>,
    prefixes: HashSet<char>,
    all: HashSet<String>,
}

const ONES: [&str; 19] = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [(&str, u64); 8] = [
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];
const MULTIPLIERS: [(&str, usize); 12] = [
    ("hundred", 2),
    ("thousand", 3),
    ("million", 6),
    ("billion", 9),
    ("trillion", 12),
    ("quadrillion", 15),
    ("quintillion", 18),
    ("sextillion", 21),
    ("septillion", 24),
    ("octillion", 27),
    ("nonillion", 30),
    ("decillion", 33),
];
const SPECIALS: [&str; 4] = ["and", "double", "triple", "point"];

impl Words {
    fn new() -> Self {
        let zeros: HashSet<&str> = ["o", "oh", "zero"].into();
        let ones: HashMap<String, u64> = ONES
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i as u64 + 1))
            .collect();
        let mut ones_suffixed = HashMap::new();
        for (name, &v) in &ones {
            let plural = if name == "six" {
                "sixes".to_string()
            } else {
                format!("{name}s")
            };
            ones_suffixed.insert(plural, (v, "s"));
        }
        for (name, v, s) in [
            ("zeroth", 0, "th"),
            ("first", 1, "st"),
            ("second", 2, "nd"),
            ("third", 3, "rd"),
            ("fifth", 5, "th"),
            ("twelfth", 12, "th"),
        ] {
            ones_suffixed.insert(name.to_string(), (v, s));
        }
        for (name, &v) in &ones {
            if v > 3 && v != 5 && v != 12 {
                // Whisper's rule, including its "nineth".
                let h = if name.ends_with('t') { "h" } else { "th" };
                ones_suffixed.insert(format!("{name}{h}"), (v, "th"));
            }
        }
        let tens: HashMap<String, u64> = TENS.iter().map(|&(n, v)| (n.to_string(), v)).collect();
        let mut tens_suffixed = HashMap::new();
        for &(n, v) in &TENS {
            tens_suffixed.insert(n.replace('y', "ies"), (v, "s"));
            tens_suffixed.insert(n.replace('y', "ieth"), (v, "th"));
        }
        let multipliers: HashMap<String, usize> = MULTIPLIERS
            .iter()
            .map(|&(n, k)| (n.to_string(), k))
            .collect();
        let mut multipliers_suffixed = HashMap::new();
        for &(n, k) in &MULTIPLIERS {
            multipliers_suffixed.insert(format!("{n}s"), (k, "s"));
            multipliers_suffixed.insert(format!("{n}th"), (k, "th"));
        }
        let decimals: HashSet<String> = ones
            .keys()
            .chain(tens.keys())
            .cloned()
            .chain(zeros.iter().map(|z| z.to_string()))
            .collect();
        let preceding_prefixers: HashMap<&str, &str> = [
            ("minus", "-"),
            ("negative", "-"),
            ("plus", "+"),
            ("positive", "+"),
        ]
        .into();
        let following_prefixers: HashMap<&str, &str> = [
            ("pound", "£"),
            ("pounds", "£"),
            ("euro", "€"),
            ("euros", "€"),
            ("dollar", "$"),
            ("dollars", "$"),
            ("cent", "¢"),
            ("cents", "¢"),
        ]
        .into();
        let prefixes = preceding_prefixers
            .values()
            .chain(following_prefixers.values())
            .filter_map(|p| p.chars().next())
            .collect();
        let mut all: HashSet<String> = HashSet::new();
        all.extend(zeros.iter().map(|s| s.to_string()));
        all.extend(ones.keys().cloned());
        all.extend(ones_suffixed.keys().cloned());
        all.extend(tens.keys().cloned());
        all.extend(tens_suffixed.keys().cloned());
        all.extend(multipliers.keys().cloned());
        all.extend(multipliers_suffixed.keys().cloned());
        all.extend(preceding_prefixers.keys().map(|s| s.to_string()));
        all.extend(following_prefixers.keys().map(|s| s.to_string()));
        all.extend(["per", "percent"].map(String::from));
        all.extend(SPECIALS.map(String::from));
        Words {
            zeros,
            ones,
            ones_suffixed,
            tens,
            tens_suffixed,
            multipliers,
            multipliers_suffixed,
            decimals,
            preceding_prefixers,
            following_prefixers,
            prefixes,
            all,
        }
    }
}

static WORDS: LazyLock<Words> = LazyLock::new(Words::new);

/// The state of `process_words`: pending prefix and value, and the words produced.
struct Machine<'w> {
    w: &'w Words,
    prefix: Option<String>,
    value: Option<Value>,
    out: Vec<String>,
}

impl Machine<'_> {
    /// Python's `output(result)`: prefix the result, reset prefix and value, emit.
    fn output(&mut self, result: String) {
        let r = match self.prefix.take() {
            Some(p) => p + &result,
            None => result,
        };
        self.value = None;
        self.out.push(r);
    }

    fn flush(&mut self) {
        if let Some(v) = self.value.clone() {
            self.output(v.text());
        }
    }

    fn is_ones(&self, w: Option<&str>) -> bool {
        w.is_some_and(|w| self.w.ones.contains_key(w))
    }

    fn is_tens(&self, w: Option<&str>) -> bool {
        w.is_some_and(|w| self.w.tens.contains_key(w))
    }

    fn is_numeric_word(&self, w: Option<&str>) -> bool {
        w.is_some_and(|w| self.w.all.contains(w))
    }

    /// `ones`/`ones_suffixed` share this: the new value after a digit word, as Python computes it.
    fn with_ones(&self, prev: Option<&str>, ones: u64) -> Value {
        let value = self.value.clone().expect("caller checked");
        match value {
            Value::Str(s) if self.is_tens(prev) && ones < 10 => {
                // Replace the last zero of "20" with the digit.
                let mut chars: Vec<char> = s.chars().collect();
                chars.pop();
                Value::Str(format!("{}{ones}", chars.into_iter().collect::<String>()))
            }
            v @ Value::Str(_) => Value::Str(format!("{}{ones}", v.text())),
            v if self.is_ones(prev) => Value::Str(format!("{}{ones}", v.text())),
            Value::Int(n) => {
                let base = if ones < 10 { 1 } else { 2 };
                if n.rem_pow10(base) == 0 {
                    Value::Int(n.add(&Nat::from_u64(ones)))
                } else {
                    Value::Str(format!("{n}{ones}"))
                }
            }
        }
    }

    fn with_tens(&self, tens: u64) -> Value {
        match self.value.clone().expect("caller checked") {
            Value::Str(s) => Value::Str(format!("{s}{tens}")),
            Value::Int(n) if n.rem_pow10(2) == 0 => Value::Int(n.add(&Nat::from_u64(tens))),
            Value::Int(n) => Value::Str(format!("{n}{tens}")),
        }
    }

    /// `before + residual * multiplier` with `before = value // 1000 * 1000`.
    fn times(n: &Nat, k: usize) -> Nat {
        let residual = Nat::from_u64(n.rem_pow10(3));
        n.floor_pow10(3).add(&residual.mul_pow10(k))
    }

    /// One step of the loop over `(prev, current, next)`; returns whether to skip `next`.
    fn step(&mut self, prev: Option<&str>, current: &str, next: Option<&str>) -> bool {
        let w = self.w;
        let next_is_numeric = next.is_some_and(is_numeric);
        let first = current.chars().next().expect("words are non-empty");
        let has_prefix = w.prefixes.contains(&first);
        let without_prefix = if has_prefix {
            &current[first.len_utf8()..]
        } else {
            current
        };
        if is_numeric(without_prefix) {
            if let Some(v) = &self.value {
                if matches!(v, Value::Str(s) if s.ends_with('.')) {
                    // Concatenate decimals / IP address components.
                    self.value = Some(Value::Str(format!("{}{current}", v.text())));
                    return false;
                }
                self.flush();
            }
            if has_prefix {
                self.prefix = Some(first.to_string());
            }
            self.value = Some(match integral(without_prefix) {
                Some(n) => Value::Int(n),
                None => Value::Str(without_prefix.to_string()),
            });
        } else if !w.all.contains(current) {
            self.flush();
            self.output(current.to_string());
        } else if w.zeros.contains(current) {
            self.value = Some(Value::Str(or_empty(&self.value) + "0"));
        } else if let Some(&ones) = w.ones.get(current) {
            self.value = Some(match self.value {
                None => Value::int(ones),
                Some(_) => self.with_ones(prev, ones),
            });
        } else if let Some(&(ones, suffix)) = w.ones_suffixed.get(current) {
            let v = match self.value {
                None => ones.to_string(),
                Some(_) => self.with_ones(prev, ones).text(),
            };
            self.output(v + suffix);
        } else if let Some(&tens) = w.tens.get(current) {
            self.value = Some(match self.value {
                None => Value::int(tens),
                Some(_) => self.with_tens(tens),
            });
        } else if let Some(&(tens, suffix)) = w.tens_suffixed.get(current) {
            let v = match self.value {
                None => tens.to_string(),
                Some(_) => self.with_tens(tens).text(),
            };
            self.output(v + suffix);
        } else if let Some(&k) = w.multipliers.get(current) {
            self.multiplier(k);
        } else if let Some(&(k, suffix)) = w.multipliers_suffixed.get(current) {
            self.multiplier_suffixed(k, suffix);
        } else if let Some(&p) = w.preceding_prefixers.get(current) {
            self.flush();
            if self.is_numeric_word(next) || next_is_numeric {
                self.prefix = Some(p.to_string());
            } else {
                self.output(current.to_string());
            }
        } else if let Some(&p) = w.following_prefixers.get(current) {
            if let Some(v) = self.value.clone() {
                self.prefix = Some(p.to_string());
                self.output(v.text());
            } else {
                self.output(current.to_string());
            }
        } else if current == "per" || current == "percent" {
            return self.suffixer(current, next);
        } else {
            return self.special(prev, current, next, next_is_numeric);
        }
        false
    }

    fn multiplier(&mut self, k: usize) {
        self.value = Some(match self.value.clone() {
            None => Value::Int(Nat::from_u64(1).mul_pow10(k)),
            Some(Value::Int(n)) if !n.is_zero() => Value::Int(Self::times(&n, k)),
            Some(v) => {
                // A digit string (or zero): multiply it as a fraction when that gives an integer.
                let p = match &v {
                    Value::Int(n) => Some(Some(n.mul_pow10(k))),
                    Value::Str(s) => fraction_times_pow10(s, k),
                };
                match p {
                    Some(Some(n)) => Value::Int(n),
                    _ => {
                        self.output(v.text());
                        Value::Int(Nat::from_u64(1).mul_pow10(k))
                    }
                }
            }
        });
    }

    fn multiplier_suffixed(&mut self, k: usize, suffix: &str) {
        match self.value.clone() {
            None => self.output(format!("{}{suffix}", Nat::from_u64(1).mul_pow10(k))),
            Some(Value::Str(s)) => match fraction_times_pow10(&s, k) {
                Some(Some(n)) => self.output(format!("{n}{suffix}")),
                _ => {
                    self.output(s);
                    self.output(format!("{}{suffix}", Nat::from_u64(1).mul_pow10(k)));
                }
            },
            Some(Value::Int(n)) => self.output(format!("{}{suffix}", Self::times(&n, k))),
        }
        self.value = None;
    }

    fn suffixer(&mut self, current: &str, next: Option<&str>) -> bool {
        let Some(v) = self.value.clone() else {
            self.output(current.to_string());
            return false;
        };
        if current == "percent" {
            self.output(format!("{}%", v.text()));
            return false;
        }
        // "per" only becomes "%" before "cent".
        if next == Some("cent") {
            self.output(format!("{}%", v.text()));
            true
        } else {
            self.output(v.text());
            self.output(current.to_string());
            false
        }
    }

    fn special(
        &mut self,
        prev: Option<&str>,
        current: &str,
        next: Option<&str>,
        next_is_numeric: bool,
    ) -> bool {
        let w = self.w;
        if !self.is_numeric_word(next) && !next_is_numeric {
            // Only treat it specially if the next word can be numeric.
            self.flush();
            self.output(current.to_string());
        } else if current == "and" {
            // Ignore "and" after hundreds, thousands, etc.
            if !prev.is_some_and(|p| w.multipliers.contains_key(p)) {
                self.flush();
                self.output(current.to_string());
            }
        } else if current == "double" || current == "triple" {
            let next_w = next.unwrap_or("");
            if w.ones.contains_key(next_w) || w.zeros.contains(next_w) {
                let repeats = if current == "double" { 2 } else { 3 };
                let ones = w.ones.get(next_w).copied().unwrap_or(0);
                let v = or_empty(&self.value) + &ones.to_string().repeat(repeats);
                self.value = Some(Value::Str(v));
                return true;
            }
            self.flush();
            self.output(current.to_string());
        } else if current == "point"
            && (next.is_some_and(|n| w.decimals.contains(n)) || next_is_numeric)
        {
            self.value = Some(Value::Str(or_empty(&self.value) + "."));
        }
        false
    }
}

/// `process_words`: rewrites a list of words.
fn process_words(words: &[&str]) -> Vec<String> {
    let mut m = Machine {
        w: &WORDS,
        prefix: None,
        value: None,
        out: Vec::with_capacity(words.len()),
    };
    let mut skip = false;
    for (i, &current) in words.iter().enumerate() {
        if skip {
            skip = false;
            continue;
        }
        let prev = i.checked_sub(1).map(|p| words[p]);
        let next = words.get(i + 1).copied();
        skip = m.step(prev, current, next);
    }
    m.flush();
    m.out
}

static AND_A_HALF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\band[\s\x1c-\x1f]+a[\s\x1c-\x1f]+half\b").unwrap());
static LETTER_DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"([a-z])([0-9])").unwrap());
static DIGIT_LETTER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"([0-9])([a-z])").unwrap());
static DIGIT_SUFFIX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([0-9])[\s\x1c-\x1f]+(st|nd|rd|th|s)\b").unwrap());
static CENTS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b").unwrap());
static ONLY_CENTS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[€£$]0.([0-9]{1,2})\b").unwrap());
static ONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b1(s?)\b").unwrap());

/// `preprocess`: "<number> and a half" → "<number> point five", and spaces at
/// digit/letter boundaries (but not before ordinal or plural suffixes).
fn preprocess(s: &str) -> String {
    let w = &*WORDS;
    let segments: Vec<&str> = AND_A_HALF.split(s).collect();
    let mut results: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if segment.trim_matches(pychar::is_space).is_empty() {
            continue;
        }
        results.push(segment);
        if i != segments.len() - 1 {
            let last = segment
                .split(pychar::is_space)
                .rfind(|t| !t.is_empty())
                .unwrap_or("");
            if w.decimals.contains(last) || w.multipliers.contains_key(last) {
                results.push("point five");
            } else {
                results.push("and a half");
            }
        }
    }
    let s = results.join(" ");
    let s = LETTER_DIGIT.replace_all(&s, "${1} ${2}");
    let s = DIGIT_LETTER.replace_all(&s, "${1} ${2}");
    DIGIT_SUFFIX.replace_all(&s, "${1}${2}").into_owned()
}

/// `postprocess`: "$2 and ¢7" → "$2.07", "$0.05" → "¢5", "1" → "one".
fn postprocess(s: &str) -> String {
    let s = CENTS.replace_all(s, |c: &Captures| {
        let cents: u32 = c[3].parse().unwrap_or(0);
        format!("{}{}.{cents:02}", &c[1], &c[2])
    });
    let s = ONLY_CENTS.replace_all(&s, |c: &Captures| {
        format!("¢{}", c[1].parse::<u32>().unwrap_or(0))
    });
    ONE.replace_all(&s, "one${1}").into_owned()
}

/// Whisper's `EnglishNumberNormalizer.__call__`.
pub fn normalize_numbers(s: &str) -> String {
    let s = preprocess(s);
    let words: Vec<&str> = crate::metrics::words(&s);
    let s = process_words(&words).join(" ");
    postprocess(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integers_and_fractions() {
        assert_eq!(Nat::from_u64(999).add(&Nat::from_u64(1)).0, "1000");
        // Python: 2500 // 1000 * 1000 + 2500 % 1000 * 10**6.
        assert_eq!(Machine::times(&Nat::from_u64(2500), 6).0, "500002000");
        assert_eq!(
            fraction_times_pow10("1.5", 2),
            Some(Some(Nat("150".into())))
        );
        assert_eq!(fraction_times_pow10("1.25", 1), Some(None));
        assert_eq!(fraction_times_pow10("1.", 2), Some(Some(Nat("100".into()))));
        assert_eq!(fraction_times_pow10(".", 2), None);
        assert_eq!(fraction_times_pow10("1.2.3", 2), None);
    }

    #[test]
    fn spelled_numbers() {
        assert_eq!(normalize_numbers("twenty one"), "21");
        assert_eq!(normalize_numbers("one oh one"), "101");
        assert_eq!(
            normalize_numbers("two point five million dollars"),
            "$2500000"
        );
        assert_eq!(
            normalize_numbers("the twenty first century"),
            "the 21st century"
        );
        assert_eq!(normalize_numbers("one"), "one");
    }
}
