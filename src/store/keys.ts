/**
 * Every Redis key the pipeline writes, in one place. All keys start with the configured prefix, so
 * tests (and a second tenant) can share a Redis without touching each other's data.
 */
export function redisKeys(prefix: string) {
  return {
    /** Prefix BullMQ puts before its own queue keys. */
    bullPrefix: `${prefix}:bull`,
    subscriberSeq: `${prefix}:sub:seq`,
    /** Hash: normalised email → subscriber id. */
    subscriberByEmail: `${prefix}:sub:by-email`,
    /** Prefix of the per-subscriber hashes; append the id. */
    subscriberPrefix: `${prefix}:sub:`,
    subscriber: (id: string) => `${prefix}:sub:${id}`,
    /** Set of list names. */
    lists: `${prefix}:lists`,
    /** Sorted set of subscriber ids, scored by id, so fan-out can walk it with a resumable cursor. */
    list: (name: string) => `${prefix}:list:${name}`,
    sendSeq: `${prefix}:send:seq`,
    /** Hash: the send record. */
    send: (sendId: string) => `${prefix}:send:${sendId}`,
    /** String: the compiled issue (JSON) every worker sends. */
    sendArtifact: (sendId: string) => `${prefix}:send:${sendId}:artifact`,
    /** Hash: subscriber id → recipient state (queued, accepted, failed, skipped). */
    sendRecipients: (sendId: string) => `${prefix}:send:${sendId}:recipients`,
    /** Set: recipients a retry round put back to queued whose jobs may not be added yet. */
    sendRequeuePending: (sendId: string) => `${prefix}:send:${sendId}:requeue-pending`,
    /** Hash: subscriber id → JSON of the last failure. */
    sendFailures: (sendId: string) => `${prefix}:send:${sendId}:failures`,
    /** Sorted set: issue ids that have been sent, scored by the time of their first send. */
    sentIssues: `${prefix}:issues:sent`,
    /** List of the send ids of one issue, oldest first. */
    issueSends: (issueId: string) => `${prefix}:issue:${issueId}:sends`,
  } as const;
}

/** The key builders of one prefix. */
export type RedisKeys = ReturnType<typeof redisKeys>;
