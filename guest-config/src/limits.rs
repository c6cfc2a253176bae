//! The resource-limit values of a service (contract §3): sizes (`memory_max`, `memory_high`:
//! bytes or `"512M"`, `"2G"`) and CPU bandwidth (`cpu_max`: `"50%"` of one CPU or `"1.5"`
//! CPUs). Owns parsing, bounds and the form written into cgroup v2 files; it does not touch
//! cgroups (the supervisor does). Each value keeps the text it was written as, so a console
//! line can name the limit as the operator wrote it (`memory_max = 64M`).

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A byte count from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes {
    pub bytes: u64,
    /// As written (`"64M"`, or the integer).
    pub text: String,
}

/// The smallest memory limit accepted: below one page per CPU the kernel OOM-kills the
/// service before `execve` finishes, which looks like a broken binary, not a limit.
pub const MIN_MEMORY: u64 = 1 << 20;

impl Bytes {
    /// `1234`, `"1234"`, `"64K"`, `"64M"`, `"2G"`, `"1T"` (binary units, `"64MiB"` too).
    pub fn parse(s: &str) -> Result<Bytes, String> {
        let t = s.trim();
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        let (num, unit) = t.split_at(digits);
        if num.is_empty() {
            return Err(format!(
                "invalid size {s:?}: expected a number of bytes or e.g. \"512M\", \"2G\""
            ));
        }
        let shift = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KB" | "KIB" => 10,
            "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            "T" | "TB" | "TIB" => 40,
            other => {
                return Err(format!(
                    "invalid size {s:?}: unknown unit {other:?} (K, M, G or T)"
                ))
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}: number too large"))?;
        let bytes = n
            .checked_mul(1u64 << shift)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))?;
        if bytes < MIN_MEMORY {
            return Err(format!(
                "size {s:?} is below the 1M minimum (a service cannot even start in it)"
            ));
        }
        Ok(Bytes {
            bytes,
            text: t.to_string(),
        })
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string(),
            Raw::Text(s) => s,
        };
        Bytes::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The cgroup v2 `cpu.max` period: 100 ms, the kernel's default.
pub const CPU_PERIOD_US: u64 = 100_000;

/// CPU bandwidth, as a quota per [`CPU_PERIOD_US`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuMax {
    /// Microseconds of CPU time per period (may exceed the period: more than one CPU).
    pub quota_us: u64,
    pub text: String,
}

impl CpuMax {
    /// `"50%"` (of one CPU) or `"1.5"` (CPUs). At least 1% (1 ms per period: the kernel's
    /// minimum quota), at most 1024 CPUs.
    pub fn parse(s: &str) -> Result<CpuMax, String> {
        let t = s.trim();
        let (num, scale) = match t.strip_suffix('%') {
            Some(p) => (p.trim(), 0.01),
            None => (t, 1.0),
        };
        let v: f64 = num.parse().map_err(|_| {
            format!("invalid cpu_max {s:?}: expected \"50%\" of one CPU or \"1.5\" CPUs")
        })?;
        let cpus = v * scale;
        if !cpus.is_finite() || !(0.01..=1024.0).contains(&cpus) {
            return Err(format!(
                "cpu_max {s:?} out of range (from \"1%\" to \"1024\" CPUs)"
            ));
        }
        // In range by the check above: 1_000 ..= 102_400_000 µs, exact enough as an integer.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let quota_us = (cpus * CPU_PERIOD_US as f64).round() as u64;
        Ok(CpuMax {
            quota_us,
            text: t.to_string(),
        })
    }

    /// The line written to `cpu.max`: `"$QUOTA $PERIOD"`.
    pub fn cgroup_line(&self) -> String {
        format!("{} {CPU_PERIOD_US}", self.quota_us)
    }
}

impl fmt::Display for CpuMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for CpuMax {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string(),
            Raw::Float(x) => x.to_string(),
            Raw::Text(s) => s,
        };
        CpuMax::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `cpu_weight`: 1–10000 (cgroup v2 `cpu.weight`, default 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuWeight(pub u32);

impl<'de> Deserialize<'de> for CpuWeight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(w @ 1..=10_000) => Ok(CpuWeight(w)),
            _ => Err(serde::de::Error::custom(format!(
                "cpu_weight {n} out of range (1 to 10000, default 100)"
            ))),
        }
    }
}

/// A positive count (`pids_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u64);

/// The largest `nofile` accepted: the kernel's hard ceiling for `nr_open` is 2^30 − 64.
pub const MAX_NOFILE: u64 = (1 << 30) - 64;

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u64::try_from(n) {
            Ok(c) if c >= 1 => Ok(Count(c)),
            _ => Err(serde::de::Error::custom(format!(
                "{n} is not a positive count"
            ))),
        }
    }
}

/// `nofile`: RLIMIT_NOFILE, soft and hard, 1 to [`MAX_NOFILE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile(pub u64);

impl<'de> Deserialize<'de> for Nofile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u64::try_from(n) {
            Ok(c @ 1..=MAX_NOFILE) => Ok(Nofile(c)),
            _ if n < 1 => Err(serde::de::Error::custom(format!(
                "{n} is not a positive count"
            ))),
            _ => Err(serde::de::Error::custom(format!(
                "nofile {n} is above the kernel's ceiling {MAX_NOFILE}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Bytes::parse("64M").unwrap().bytes, 64 << 20);
        assert_eq!(Bytes::parse("2G").unwrap().bytes, 2 << 30);
        assert_eq!(Bytes::parse("512MiB").unwrap().bytes, 512 << 20);
        assert_eq!(Bytes::parse("2097152").unwrap().bytes, 2 << 20);
        assert_eq!(Bytes::parse("64M").unwrap().to_string(), "64M");
        for bad in [
            "",
            "M",
            "64Q",
            "-5M",
            "1.5G",
            "99999999999999999999",
            "16777216T",
        ] {
            assert!(Bytes::parse(bad).is_err(), "{bad:?} accepted");
        }
        let e = Bytes::parse("100K").unwrap_err();
        assert!(e.contains("100K") && e.contains("minimum"), "{e}");
    }

    #[test]
    fn cpu_bandwidth() {
        assert_eq!(CpuMax::parse("50%").unwrap().cgroup_line(), "50000 100000");
        assert_eq!(CpuMax::parse("1.5").unwrap().quota_us, 150_000);
        assert_eq!(CpuMax::parse("20 %").unwrap().quota_us, 20_000);
        assert_eq!(CpuMax::parse("2").unwrap().quota_us, 200_000);
        for bad in ["", "%", "0", "0.1%", "fast", "NaN", "inf", "2000"] {
            assert!(CpuMax::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
