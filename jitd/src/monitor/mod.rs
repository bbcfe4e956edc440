//! Watching what a grant's processes do: each grant gets its own cgroup (v2), which its login
//! sessions and sudo commands join and which teardown kills as a whole.

pub mod cgroup;
