//! Tests across modules: a synthetic module tree and sysfs in a TempDir, a
//! recording fake kernel and clock, and the real Debian 6.1 indexes from the
//! harness's kernel cache.

mod bin_index;
mod coldplug;
mod fakes;
mod index;
mod loader;
mod real_tree;
