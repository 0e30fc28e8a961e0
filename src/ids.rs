//! Typed indices and the tables they index.
//!
//! A topology numbers its relays, mounts and streams once per config;
//! every per-relay, per-mount and per-stream table is indexed by those
//! numbers. The ids are distinct types ([`RelayId`], [`MountId`],
//! [`StreamId`], [`GroupId`], [`PoolId`]) and the tables take only their own id ([`PerRelay`],
//! [`PerMount`], [`PerStream`], and the relay x mount [`Grid`]), so swapping
//! a relay and a mount index does not compile. A leaf module: it knows
//! nothing of floe's other parts.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

/// A position in a table of one kind of thing (see [`Table`]).
pub trait Id: Copy + Eq + fmt::Debug {
    /// The id at position `i`.
    fn at(i: usize) -> Self;
    /// Its position.
    fn index(self) -> usize;
}

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl Id for $name {
            #[inline]
            fn at(i: usize) -> Self {
                $name::new(i)
            }
            #[inline]
            fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl $name {
            /// The id at position `i` (tests and tools build ids from
            /// positions they know).
            #[inline]
            pub const fn new(i: usize) -> Self {
                assert!(i <= u32::MAX as usize, "id out of range");
                $name(i as u32)
            }

            /// Its position in the topology.
            #[inline]
            pub fn index(self) -> usize {
                <Self as Id>::index(self)
            }
        }
    };
}

id!(
    /// A relay of one topology, in config order.
    RelayId
);
id!(
    /// A mount of one topology (across streams, in config order).
    MountId
);
id!(
    /// A stream of one topology, in config order.
    StreamId
);

id!(
    /// A relay group of one topology: `[[group]]`s in config order, then
    /// the implicit group `*` (every relay not in an exclusive group).
    GroupId
);
id!(
    /// A listener pool of one topology: the default pool first, then the
    /// `[[pool]]`s with networks in config order.
    PoolId
);

/// A table with one `T` per id of kind `I`, built once and indexed only by
/// that kind of id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table<I, T> {
    items: Box<[T]>,
    kind: PhantomData<fn(I)>,
}

/// One `T` per relay.
pub type PerRelay<T> = Table<RelayId, T>;
/// One `T` per mount.
pub type PerMount<T> = Table<MountId, T>;
/// One `T` per stream.
pub type PerStream<T> = Table<StreamId, T>;
/// One `T` per relay group.
pub type PerGroup<T> = Table<GroupId, T>;
/// One `T` per listener pool.
pub type PerPool<T> = Table<PoolId, T>;

impl<I: Id, T> Table<I, T> {
    /// How many ids the table has.
    #[inline]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when it has none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every id, in order.
    pub fn ids(&self) -> impl DoubleEndedIterator<Item = I> + ExactSizeIterator + use<I, T> {
        (0..self.items.len()).map(I::at)
    }

    /// The items, in id order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// The items, to change.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.items.iter_mut()
    }

    /// Each id with its item.
    pub fn iter_ids(&self) -> impl Iterator<Item = (I, &T)> {
        self.items.iter().enumerate().map(|(i, t)| (I::at(i), t))
    }

    /// The item of `id`, if the table has it.
    #[inline]
    pub fn get(&self, id: I) -> Option<&T> {
        self.items.get(id.index())
    }

    /// The first id whose item satisfies `f`.
    pub fn position(&self, f: impl FnMut(&T) -> bool) -> Option<I> {
        self.items.iter().position(f).map(I::at)
    }

    /// A table of `f` applied to every item.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Table<I, U> {
        self.items.iter().map(f).collect()
    }
}

impl<I, T> Default for Table<I, T> {
    fn default() -> Self {
        Table {
            items: Box::default(),
            kind: PhantomData,
        }
    }
}

impl<I, T> FromIterator<T> for Table<I, T> {
    fn from_iter<It: IntoIterator<Item = T>>(iter: It) -> Self {
        Table {
            items: iter.into_iter().collect(),
            kind: PhantomData,
        }
    }
}

impl<I, T> From<Vec<T>> for Table<I, T> {
    fn from(v: Vec<T>) -> Self {
        Table {
            items: v.into(),
            kind: PhantomData,
        }
    }
}

impl<I: Id, T> Index<I> for Table<I, T> {
    type Output = T;
    #[inline]
    fn index(&self, id: I) -> &T {
        &self.items[id.index()]
    }
}

impl<I: Id, T> IndexMut<I> for Table<I, T> {
    #[inline]
    fn index_mut(&mut self, id: I) -> &mut T {
        &mut self.items[id.index()]
    }
}

/// One `T` per relay x mount, stored relay by relay: the one grid type of
/// the snapshot's cells, the redirect counters and the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid<T> {
    mounts: usize,
    cells: Box<[T]>,
}

impl<T> Grid<T> {
    /// A grid of `relays` x `mounts` cells, each `f(relay, mount)`.
    pub fn build(
        relays: usize,
        mounts: usize,
        mut f: impl FnMut(RelayId, MountId) -> T,
    ) -> Grid<T> {
        let cells = (0..relays)
            .flat_map(|r| (0..mounts).map(move |m| (r, m)))
            .map(|(r, m)| f(RelayId::at(r), MountId::at(m)))
            .collect();
        Grid { mounts, cells }
    }

    /// Mounts per relay.
    pub fn mounts(&self) -> usize {
        self.mounts
    }

    /// The cells of relay `r`, in mount order.
    #[inline]
    pub fn row(&self, r: RelayId) -> &[T] {
        let start = r.index() * self.mounts;
        &self.cells[start..start + self.mounts]
    }

    /// The cells of relay `r`, to fill in.
    #[inline]
    pub fn row_mut(&mut self, r: RelayId) -> &mut [T] {
        let start = r.index() * self.mounts;
        &mut self.cells[start..start + self.mounts]
    }

    /// A grid of `f` applied to every cell.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Grid<U> {
        Grid {
            mounts: self.mounts,
            cells: self.cells.iter().map(f).collect(),
        }
    }

    /// Every cell, relay by relay.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.cells.iter()
    }

    /// Every cell, to change.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.cells.iter_mut()
    }
}

impl<T: Clone + Default> Grid<T> {
    /// A grid of `relays` x `mounts` default cells.
    pub fn new(relays: usize, mounts: usize) -> Grid<T> {
        Grid {
            mounts,
            cells: vec![T::default(); relays * mounts].into(),
        }
    }
}

impl<T> Default for Grid<T> {
    fn default() -> Self {
        Grid {
            mounts: 0,
            cells: Box::default(),
        }
    }
}

impl<T> Index<(RelayId, MountId)> for Grid<T> {
    type Output = T;
    #[inline]
    fn index(&self, (r, m): (RelayId, MountId)) -> &T {
        &self.row(r)[m.index()]
    }
}

impl<T> IndexMut<(RelayId, MountId)> for Grid<T> {
    #[inline]
    fn index_mut(&mut self, (r, m): (RelayId, MountId)) -> &mut T {
        &mut self.row_mut(r)[m.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_cells_are_relay_by_relay() {
        let g = Grid::build(3, 2, |r, m| r.index() * 10 + m.index());
        assert_eq!(g[(RelayId::new(2), MountId::new(1))], 21);
        assert_eq!(g.row(RelayId::new(1)), &[10, 11]);
        assert_eq!(g.iter().count(), 6);
    }

    #[test]
    fn tables_index_by_their_own_id() {
        let t: PerRelay<&str> = vec!["a", "b"].into();
        assert_eq!(t[RelayId::new(1)], "b");
        assert_eq!(
            t.ids().collect::<Vec<_>>(),
            [RelayId::new(0), RelayId::new(1)]
        );
        assert_eq!(t.position(|s| *s == "b"), Some(RelayId::new(1)));
    }
}
