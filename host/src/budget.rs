//! One budget of memory for everything that grows with what clients send:
//! request bodies in flight and guests' linear memories. Past it, new large
//! requests are refused with a `503` and guests cannot grow, instead of the
//! process growing until the machine gives out.
//!
//! A [`Charge`] holds part of the budget and gives it back when dropped.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget is counted in units of this many bytes.
const UNIT: u64 = 1024;

/// A shared memory budget. Cheap to clone; clones share the budget.
#[derive(Debug, Clone, Default)]
pub struct MemoryBudget {
    /// `None`: no budget, every charge is granted.
    units: Option<Arc<Semaphore>>,
}

/// Part of a [`MemoryBudget`], given back on drop.
#[derive(Debug, Default)]
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded down to whole KiB).
    pub fn new(bytes: u64) -> Self {
        let units = usize::try_from(bytes / UNIT)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            units: Some(Arc::new(Semaphore::new(units))),
        }
    }

    /// No budget: every charge is granted.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Takes `bytes` (rounded up to whole KiB) from the budget, or `None` if
    /// that much is not free now.
    pub fn try_charge(&self, bytes: u64) -> Option<Charge> {
        let Some(units) = &self.units else {
            return Some(Charge::default());
        };
        if bytes == 0 {
            return Some(Charge::default());
        }
        let wanted = u32::try_from(bytes.div_ceil(UNIT)).ok()?;
        let permit = units.clone().try_acquire_many_owned(wanted).ok()?;
        Some(Charge {
            permit: Some(permit),
        })
    }

    /// Bytes free now; `None` without a budget.
    pub fn available(&self) -> Option<u64> {
        self.units
            .as_ref()
            .map(|u| u.available_permits() as u64 * UNIT)
    }
}

impl Charge {
    /// Adds `other` to this charge: both are given back together.
    pub fn absorb(&mut self, other: Charge) {
        match (&mut self.permit, other.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    /// Bytes this charge holds.
    pub fn bytes(&self) -> u64 {
        self.permit
            .as_ref()
            .map_or(0, |p| p.num_permits() as u64 * UNIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_granted_while_the_budget_lasts_and_given_back_on_drop() {
        let budget = MemoryBudget::new(10 * UNIT);
        let mut first = budget.try_charge(4 * UNIT).expect("4 of 10 KiB");
        first.absorb(budget.try_charge(1).expect("one byte counts as a KiB"));
        assert_eq!(first.bytes(), 5 * UNIT);
        assert!(budget.try_charge(6 * UNIT).is_none(), "only 5 KiB are free");
        let second = budget.try_charge(5 * UNIT).expect("the last 5 KiB");
        assert_eq!(budget.available(), Some(0));
        drop(first);
        assert_eq!(budget.available(), Some(5 * UNIT));
        drop(second);
        assert!(budget.try_charge(10 * UNIT).is_some());
        assert!(
            budget.try_charge(11 * UNIT).is_none(),
            "more than the whole budget"
        );
    }

    #[test]
    fn without_a_budget_everything_is_granted() {
        let budget = MemoryBudget::unlimited();
        assert!(budget.try_charge(u64::MAX).is_some());
        assert_eq!(budget.available(), None);
    }
}
