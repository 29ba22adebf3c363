//! The encoding every record is written in: a format byte, then fields of
//! fixed width (big-endian) or with their length first.

use super::Malformed;
use crate::objectstore::types::Ttl;

pub(super) const FORMAT: u8 = 1;

#[derive(Default)]
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn new() -> Self {
        Self(vec![FORMAT])
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
        match bytes.split_first() {
            Some((&FORMAT, rest)) => Ok(Self(rest)),
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
