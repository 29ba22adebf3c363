//! The encodings records are written in: a format byte, then fields.
//!
//! - Format 1: fields of fixed width (big-endian), bytes with a u64 length
//!   first. Every record but a key's entry and an index page; those two
//!   as written before the compact format.
//! - Format 2, compact: unsigned integers (and lengths) as LEB128 varints,
//!   7 bits a byte. The records there are many of, a key's entry (one per
//!   key, `entry`) and an index page (its names front-coded, `page`), are
//!   written so.

use super::Malformed;
use crate::objectstore::types::Ttl;

pub(super) const FORMAT: u8 = 1;
pub(super) const COMPACT: u8 = 2;

/// The most bytes a u64 takes as a varint: ceil(64 / 7).
const VAR_MAX: usize = 10;

/// How many bytes [`Writer::var`] writes for `v`.
pub(crate) fn var_len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).div_ceil(7).max(1)
}

#[derive(Default)]
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn new() -> Self {
        Self(vec![FORMAT])
    }
    /// A writer of the compact format: its fields go through
    /// [`var`](Self::var) and [`var_bytes`](Self::var_bytes).
    pub(super) fn compact() -> Self {
        Self(vec![COMPACT])
    }
    /// `v` as a LEB128 varint: 1 byte below 128, 10 at most.
    pub(super) fn var(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }
    pub(super) fn var_bytes(&mut self, v: &[u8]) -> &mut Self {
        self.var(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    /// An optional name in the compact format: a byte saying whether it is
    /// there, then its bytes.
    pub(super) fn var_name(&mut self, name: Option<&str>) -> &mut Self {
        match name {
            None => self.u8(0),
            Some(n) => self.u8(1).var_bytes(n.as_bytes()),
        }
    }
    pub(super) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(super) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(super) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    pub(super) fn limit(&mut self, limit: Option<u64>) -> &mut Self {
        match limit {
            None => self.u8(0).u64(0),
            Some(n) => self.u8(1).u64(n),
        }
    }
    #[cfg(test)]
    pub(super) fn name(&mut self, name: Option<&str>) -> &mut Self {
        match name {
            None => self.u8(0),
            Some(n) => self.u8(1).bytes(n.as_bytes()),
        }
    }
    pub(super) fn ttl(&mut self, ttl: Option<Ttl>) -> &mut Self {
        match ttl {
            None => self.u8(0).u64(0),
            Some(Ttl::Never) => self.u8(1).u64(0),
            Some(Ttl::Fixed(s)) => self.u8(2).u64(s),
            Some(Ttl::Rolling(s)) => self.u8(3).u64(s),
        }
    }
}

pub(super) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Result<Self, Malformed> {
        Self::of_format(FORMAT, bytes)
    }
    pub(super) fn compact(bytes: &'a [u8]) -> Result<Self, Malformed> {
        Self::of_format(COMPACT, bytes)
    }
    fn of_format(format: u8, bytes: &'a [u8]) -> Result<Self, Malformed> {
        match bytes.split_first() {
            Some((&first, rest)) if first == format => Ok(Self(rest)),
            _ => Err(Malformed),
        }
    }
    /// A LEB128 varint as [`Writer::var`] writes it, and only so: one that
    /// runs past 10 bytes, overflows a u64 or ends in a zero byte after
    /// the first (another spelling of a shorter one) is malformed.
    pub(super) fn var(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for i in 0..VAR_MAX {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if i == VAR_MAX - 1 && byte > 1 {
                return Err(Malformed);
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(Malformed);
                }
                return Ok(v);
            }
        }
        Err(Malformed)
    }
    pub(super) fn var_bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = usize::try_from(self.var()?).map_err(|_| Malformed)?;
        self.take(len)
    }
    pub(super) fn var_string(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.var_bytes()?.to_vec()).map_err(|_| Malformed)
    }
    pub(super) fn var_name(&mut self) -> Result<Option<String>, Malformed> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.var_string()?)),
            _ => Err(Malformed),
        }
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = usize::try_from(self.u64()?).map_err(|_| Malformed)?;
        self.take(len)
    }
    pub(super) fn string(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Malformed)
    }
    pub(super) fn key32(&mut self) -> Result<[u8; 32], Malformed> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }
    pub(super) fn limit(&mut self) -> Result<Option<u64>, Malformed> {
        let set = self.u8()?;
        let n = self.u64()?;
        match set {
            0 => Ok(None),
            1 => Ok(Some(n)),
            _ => Err(Malformed),
        }
    }
    pub(super) fn name(&mut self) -> Result<Option<String>, Malformed> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            _ => Err(Malformed),
        }
    }
    pub(super) fn ttl(&mut self) -> Result<Option<Ttl>, Malformed> {
        let kind = self.u8()?;
        let secs = self.u64()?;
        Ok(match kind {
            0 => None,
            1 => Some(Ttl::Never),
            2 => Some(Ttl::Fixed(secs)),
            3 => Some(Ttl::Rolling(secs)),
            _ => return Err(Malformed),
        })
    }
    pub(super) fn finish(self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}
