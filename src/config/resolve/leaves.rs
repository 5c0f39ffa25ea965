//! Single values: strings, names, tags, paths, networks, sizes, durations, counts.

use super::Resolver;
use crate::config::raw::Scalar;
use crate::config::units::{self, DURATION_EXPECTED, SIZE_EXPECTED};
use crate::config::*;
use toml::Spanned;

impl Resolver<'_, '_, '_> {
    /// A string that must not be blank.
    pub(super) fn non_empty(&mut self, v: &Spanned<String>, path: &str) -> Option<String> {
        if v.get_ref().trim().is_empty() {
            self.at(v.span(), path, "empty value (expected a non-empty string)");
            None
        } else {
            Some(v.get_ref().clone())
        }
    }

    /// An optional record key name; clears `ok` when it is blank.
    pub(super) fn opt_name(
        &mut self,
        v: Option<&Spanned<String>>,
        path: &str,
        ok: &mut bool,
    ) -> Option<String> {
        let v = v?;
        let name = self.non_empty(v, path);
        *ok &= name.is_some();
        name
    }

    /// An optional tag (or tag prefix): dot-separated parts, no spaces; clears `ok` when bad.
    pub(super) fn opt_tag(
        &mut self,
        v: Option<&Spanned<String>>,
        path: &str,
        ok: &mut bool,
    ) -> Option<String> {
        let v = v?;
        let tag = v.get_ref();
        let bad = tag.is_empty()
            || tag.contains(char::is_whitespace)
            || tag.starts_with('.')
            || tag.ends_with('.')
            || tag.contains("..");
        if bad {
            self.at(
                v.span(),
                path,
                format!("bad tag \"{tag}\" (expected dot-separated parts without spaces, e.g. \"td.db.table\")"),
            );
            *ok = false;
            return None;
        }
        Some(tag.clone())
    }

    /// A path as written, made relative to the config's directory.
    pub(super) fn path(&mut self, v: &Spanned<String>, path: &str) -> Option<PathBuf> {
        let written = self.non_empty(v, path)?;
        let p = PathBuf::from(written);
        Some(match self.cx.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        })
    }

    /// A CIDR network, or a single IP as a host network.
    pub(super) fn network(&mut self, v: &Spanned<String>, path: &str) -> Option<ipnet::IpNet> {
        let text = v.get_ref().trim();
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Some(net);
        }
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Some(ipnet::IpNet::from(ip));
        }
        self.at(
            v.span(),
            path,
            format!(
                "bad network \"{text}\" (expected CIDR such as \"10.0.0.0/8\" or an IP address)"
            ),
        );
        None
    }

    /// A size in bytes: a string with a unit, or an integer.
    pub(super) fn size(
        &mut self,
        v: Option<&Spanned<Scalar>>,
        path: &str,
        default: u64,
    ) -> Option<u64> {
        let Some(v) = v else { return Some(default) };
        let result = match v.get_ref() {
            Scalar::Int(n) => u64::try_from(*n)
                .map_err(|_| format!("size {n} is negative (expected {SIZE_EXPECTED})")),
            Scalar::Str(s) => units::parse_size(s),
            Scalar::Float(f) => Err(format!("bad size {f} (expected {SIZE_EXPECTED})")),
            Scalar::Bool(b) => Err(format!("bad size {b} (expected {SIZE_EXPECTED})")),
        };
        result.map_err(|e| self.at(v.span(), path, e)).ok()
    }

    /// A size that bounds memory: above 0 and addressable.
    pub(super) fn size_usize(
        &mut self,
        v: Option<&Spanned<Scalar>>,
        path: &str,
        default: u64,
    ) -> Option<usize> {
        let bytes = self.size(v, path, default)?;
        if bytes == 0 {
            self.at(v.map_or(0..0, |v| v.span()), path, "must be above 0");
            return None;
        }
        usize::try_from(bytes)
            .map_err(|_| {
                self.at(
                    v.map_or(0..0, |v| v.span()),
                    path,
                    "too large for this machine",
                )
            })
            .ok()
    }

    /// A duration: a string with a unit, or a number of seconds.
    pub(super) fn duration(
        &mut self,
        v: Option<&Spanned<Scalar>>,
        path: &str,
        default: Duration,
    ) -> Option<Duration> {
        let Some(v) = v else { return Some(default) };
        let result = match v.get_ref() {
            Scalar::Int(n) => u64::try_from(*n)
                .map(Duration::from_secs)
                .map_err(|_| format!("duration {n} is negative (expected {DURATION_EXPECTED})")),
            Scalar::Float(f) => units::seconds(*f),
            Scalar::Str(s) => units::parse_duration(s),
            Scalar::Bool(b) => Err(format!("bad duration {b} (expected {DURATION_EXPECTED})")),
        };
        result.map_err(|e| self.at(v.span(), path, e)).ok()
    }

    /// An integer setting within `min..=max`.
    pub(super) fn count<T: TryFrom<u64>>(
        &mut self,
        v: Option<&Spanned<i64>>,
        path: &str,
        default: T,
        min: u64,
        max: u64,
    ) -> Option<T> {
        let Some(v) = v else { return Some(default) };
        let n = *v.get_ref();
        match u64::try_from(n) {
            Ok(n) if n >= min && n <= max => T::try_from(n).ok().or_else(|| {
                self.at(v.span(), path, format!("{n} is too large for this machine"));
                None
            }),
            _ => {
                self.at(
                    v.span(),
                    path,
                    format!("{n} is out of range (expected {min} to {max})"),
                );
                None
            }
        }
    }
}
