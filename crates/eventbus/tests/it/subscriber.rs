//! In-process subscribers: isolation, ordering, catch-up.
