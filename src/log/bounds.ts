/**
 * The contract's bounds on reads. They live apart from the reader, which needs storage, so that the configuration
 * (and the `seintje` command that prints it) can name them without loading the storage and its drivers.
 */

/**
 * Bounds on filters, for readers and subscriptions alike. Each type prefix is one term of the query's OR, and
 * SQLite refuses an expression tree deeper than 1,000 ("Expression tree is too large"): 998 prefixes were a 500.
 */
export const FILTER_LIMITS = { types: 20, length: 256 } as const;

/** `limit` of a page: its default and most (the contract's). */
export const PAGE_LIMIT = { default: 100, max: 1000 } as const;
/** The longest a long-poll may wait, in seconds (`wait`, the contract's). */
export const MAX_WAIT_SECONDS = 60;

/**
 * A page's byte budget: it stops adding events once their stored JSON would pass this many bytes (the first event
 * always fits: an event is at most 64 KiB), and `next` says where it stopped. So a page body is at most about
 * 1 MiB, and that is what a client that never reads its answer holds of the service's memory. Without it, 1,000
 * events of 61 KB made a 61 MB page, and ten such clients took 2.6 GB.
 */
export const MAX_PAGE_BYTES = 1024 * 1024;
