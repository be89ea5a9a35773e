// Keeps cfs_testutil a valid library while it has no other sources.
