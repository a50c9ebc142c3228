//! Building blocks of the file as written: values parsed with `FromStr`
//! while deserialising (so a bad value is reported at its own position),
//! match lists, and the span-carrying error every resolver returns.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;

use crate::core::duration::parse_duration;
use crate::core::size::parse_size;

/// A problem and the byte range of the config text it is about.
pub(crate) type Located = (std::ops::Range<usize>, String);

/// A string parsed with `FromStr` during deserialisation.
pub(crate) struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Parsed).map_err(de::Error::custom)
    }
}

/// An address to listen on, `IP:port`, with an error that says so.
pub(crate) struct ListenAddr(pub std::net::SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(ListenAddr).map_err(|_| {
            format!(
                "bad address '{}': expected IP:port, e.g. 127.0.0.1:3128 (a name is not an address to listen on)",
                crate::core::escape::escape(s)
            )
        })
    }
}

/// A duration as the config writes it (`10s`, `1m30s`).
pub(crate) struct ConfigDuration(pub Duration);

impl FromStr for ConfigDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(ConfigDuration)
    }
}

/// A size as the config writes it (`512MiB`, `20GiB`), in bytes.
pub(crate) struct ConfigSize(pub u64);

impl FromStr for ConfigSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s).map(ConfigSize)
    }
}

/// The duration in `value`, or `default`.
pub(crate) fn duration_or(value: Option<Parsed<ConfigDuration>>, default: Duration) -> Duration {
    value.map_or(default, |p| p.0.0)
}

/// The list of a match field. Absent means "everything"; present but empty
/// is a mistake, reported at the list.
pub(crate) struct MatchList<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MatchList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<T>::deserialize(d)?;
        if list.is_empty() {
            return Err(de::Error::custom(
                "empty list would match nothing; remove the field to match everything",
            ));
        }
        Ok(MatchList(list))
    }
}

/// Parses every element of a match list, reporting a bad one at its own
/// position.
pub(crate) fn parse_list<T: FromStr<Err = String>, R>(
    list: Option<MatchList<Spanned<R>>>,
    text: impl Fn(&R) -> String,
) -> Result<Option<Vec<T>>, Located> {
    let Some(list) = list else { return Ok(None) };
    list.0
        .iter()
        .map(|item| text(item.get_ref()).parse::<T>().map_err(|e| (item.span(), e)))
        .collect::<Result<Vec<T>, Located>>()
        .map(Some)
}

/// One string or a list of them.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}
