//! Deterministic slices of the inputs, for running one job as many (e.g. a Slurm job array).
use serde::{Deserialize, Serialize};

/// The slice i/n of the inputs: the images whose index is i modulo n. Written as `"i/n"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    /// Which slice, `0 <= index < count`.
    pub index: u64,
    /// How many slices.
    pub count: u64,
}

impl Shard {
    /// Whether the image with this index belongs to the slice.
    pub fn contains(&self, image_index: u64) -> bool {
        image_index % self.count == self.index
    }

    /// From a Slurm job array, when running in one.
    pub fn from_env() -> Option<Shard> {
        let id = std::env::var("SLURM_ARRAY_TASK_ID").ok()?.parse().ok()?;
        let count = std::env::var("SLURM_ARRAY_TASK_COUNT").ok()?.parse().ok()?;
        (id < count).then_some(Shard { index: id, count })
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or("expected i/n, e.g. 0/8")?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| format!("bad shard index `{i}`"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("bad shard count `{n}`"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= i < n"));
        }
        Ok(Shard { index, count })
    }
}

impl TryFrom<String> for Shard {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(s: Shard) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn parses_and_prints_i_over_n() {
        let s: Shard = " 2 / 8 ".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 8 });
        assert_eq!(s.to_string(), "2/8");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"2/8\"");
        assert_eq!(serde_json::from_str::<Shard>("\"2/8\"").unwrap(), s);
    }

    #[test]
    fn refuses_bad_slices() {
        for bad in ["3", "a/2", "1/b", "2/2", "0/0", "-1/4", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Shard>("\"5/3\"").is_err());
    }

    #[test]
    fn slices_partition_the_indices() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for idx in 0..30u64 {
            assert_eq!(shards.iter().filter(|s| s.contains(idx)).count(), 1);
        }
    }
}
