import { issueIdOfSend } from '../core/send-status.ts';

/**
 * Every Redis key the pipeline writes, in one place. All keys start with the configured prefix, so
 * tests (and a second tenant) can share a Redis without touching each other's data.
 *
 * Hash tags (the part in braces) put the keys one script touches in one Redis Cluster slot: every
 * subscriber key shares `{subs}`, and every key of the sends of one issue shares `{issue:<id>}`,
 * so a send's keys always share one tag. A prefix that carries a tag of its own (e.g. `{nl}`)
 * overrides them and puts everything in one slot, which is also safe.
 */
export function redisKeys(prefix: string) {
  const subs = `${prefix}:{subs}`;
  const issue = (issueId: string) => `${prefix}:{issue:${issueId}}`;
  const send = (sendId: string) => `${issue(issueIdOfSend(sendId))}:send:${sendId}`;
  return {
    /** String: the version of the key layout below; see migrate.ts. */
    schemaVersion: `${prefix}:schema-version`,
    /** String: set while a migration of the key layout is under way (and after one died midway). */
    migrationInProgress: `${prefix}:migration-in-progress`,
    /** String with a TTL: held by the one process migrating the key layout. */
    migrationLock: `${prefix}:migration-lock`,
    /** Prefix BullMQ puts before its own queue keys. */
    bullPrefix: `${prefix}:bull`,
    /** Prefix of @fastify/rate-limit's counters of the console's limited routes (test sends; one key per caller, with a TTL). */
    consoleRateLimit: `${prefix}:console-limit:`,

    /** Counter: the last subscriber id handed out. */
    subscriberSeq: `${subs}:seq`,
    /** Hash: emailKey (lower-cased address) → subscriber id. */
    subscriberByEmail: `${subs}:by-email`,
    /** Hash: one subscriber (email as given, name, status, attributes, timestamps). */
    subscriber: (id: string) => `${subs}:sub:${id}`,
    /** Sorted set: ids of the delivery events applied to a subscriber, scored by when (replays change nothing). */
    subscriberEventIds: (id: string) => `${subs}:sub:${id}:event-ids`,
    /** List: the subscriber's most recent delivery events (JSON), newest first, capped. */
    subscriberEvents: (id: string) => `${subs}:sub:${id}:events`,
    /** Sorted set: the subscriber's soft bounces in the policy window, scored by when they happened. */
    subscriberSoftBounces: (id: string) => `${subs}:sub:${id}:soft-bounces`,
    /** Set of list names. */
    lists: `${subs}:lists`,
    /** Sorted set of subscriber ids, scored by id, so fan-out can walk it with a resumable cursor. */
    list: (name: string) => `${subs}:list:${name}`,
    /** Hash: status → number of the list's members with it, kept by the scripts that change either. */
    listCounts: (name: string) => `${subs}:list:${name}:counts`,

    /** List of the send ids of one issue, oldest first. */
    issueSends: (issueId: string) => `${issue(issueId)}:sends`,
    /** List of the send ids of one issue to one list, oldest first. */
    listSends: (issueId: string, list: string) => `${issue(issueId)}:sends:${list}`,
    /** Hash: the send record, with its accepted/failed/skipped counters. */
    send,
    /** String: the compiled issue (JSON) every worker sends. */
    sendArtifact: (sendId: string) => `${send(sendId)}:artifact`,
    /** Hash: subscriber id → recipient state (queued, accepted, failed, skipped). */
    sendRecipients: (sendId: string) => `${send(sendId)}:recipients`,
    /**
     * Hash: subscriber id → id of the job that serves them, for the recipients still queued (the
     * scripts drop an entry when its recipient reaches a final state). What tells a stuck send.
     */
    sendQueuedJobs: (sendId: string) => `${send(sendId)}:queued-jobs`,
    /** String with a TTL: held while a fan-out of the send runs, renewed every chunk. */
    sendFanOutLease: (sendId: string) => `${send(sendId)}:fan-out-lease`,
    /** String with a TTL: held while `send --retry-failed` repairs the send, so two never do at once. */
    sendRepairLock: (sendId: string) => `${send(sendId)}:repair-lock`,
    /** Set: recipients a retry round put back to queued whose jobs may not be added yet. */
    sendRequeuePending: (sendId: string) => `${send(sendId)}:requeue-pending`,
    /** Hash: subscriber id → JSON of the last failure. */
    sendFailures: (sendId: string) => `${send(sendId)}:failures`,
    /**
     * Hash: subscriber id → "<worker id>|<claimed at, ms>|<job id>" for each recipient a worker is
     * sending to right now (the `sending` claim): another job for the same recipient waits while
     * that worker lives. The scripts that record a final state delete the entry.
     */
    sendClaims: (sendId: string) => `${send(sendId)}:claims`,
    /** Set: ids of the send's jobs put off because it was paused or their domain held; resume brings exactly these forward. */
    sendParkedJobs: (sendId: string) => `${send(sendId)}:parked-jobs`,
    /** Hash: recipient domain → JSON of why the breaker holds it (its jobs wait until `resume`). */
    sendHeldDomains: (sendId: string) => `${send(sendId)}:held-domains`,
    /**
     * Hash with a TTL, one per minute: "<scope>|<count>" → n, where scope is * (the whole send) or a
     * recipient domain, and count is sample (messages answered), hard, complaint or block. The
     * breakers sum the buckets of their window.
     */
    sendBreakerBucket: (sendId: string, minute: number) => `${send(sendId)}:breaker:${minute}`,
    /** Set: ids of the delivery events applied to the send (replays change nothing). */
    sendEventIds: (sendId: string) => `${send(sendId)}:event-ids`,
    /** Hash: "<subscriberId>:<kind>" → 1 for each recipient counted under a kind (bounced, blocked…). */
    sendEventKinds: (sendId: string) => `${send(sendId)}:event-kinds`,
    /** Hash: subscriber id → JSON of the latest bounce, complaint or unsubscribe reported for them. */
    sendReportedEvents: (sendId: string) => `${send(sendId)}:reported`,
    /**
     * Hash: "<start of a 10-second bucket, ms>|<state>" → recipients that reached accepted, failed or
     * skipped in it, and `requeued` (failed ones `--retry-failed` put back): the dashboard's
     * progress chart and rate, kept by the scripts that record a final state.
     */
    sendProgress: (sendId: string) => `${send(sendId)}:progress`,
    /**
     * Hash: "<recipient domain>|<count>" → n, where count is accepted, failed or skipped (kept with
     * the recipient's final state) or a delivery event counter (bounced, softBounced, blocked,
     * complained, unsubscribed: apply-send-event.lua); domain '' when it was unknown.
     */
    sendDomains: (sendId: string) => `${send(sendId)}:domains`,
    /** List: reports that could not be attributed to a subscriber (JSON), newest first, for inspection. */
    unmatchedReports: `${prefix}:reports:unmatched`,
    /** String with a TTL: an unmatched report already kept (by event id, or the report's hash), so a replay adds no second entry. */
    unmatchedSeen: (id: string) => `${prefix}:reports:unmatched-seen:${id}`,
    /** String with a TTL: a webhook's one-time token already seen (Mailgun), so a replay is refused. */
    webhookToken: (provider: string, token: string) => `${prefix}:webhook-token:${provider}:${token}`,
    /**
     * String with a short TTL, renewed every second by a thread of each worker process (so a
     * stalled event loop still counts as alive): whether the worker that holds a claim lives.
     */
    workerAlive: (workerId: string) => `${prefix}:worker-alive:${workerId}`,
    /** String: the next free send slot (Redis time, ms) of the global ceiling, SEND_RATE_PER_SEC. */
    paceGlobal: `${prefix}:{pace}:global`,
    /** Hash: next (the domain's next free slot, ms), backoffUntil and backoffStep (after a "slow down"), for one recipient domain. */
    paceDomain: (domain: string) => `${prefix}:{pace}:domain:${domain}`,
    /** Sorted set: recipient domains in a "slow down" backoff, scored by when it ends (what a worker without pacing limits looks at). */
    paceBackoffs: `${prefix}:{pace}:backoffs`,
    /** Stream: send.started, send.paused, send.resumed, send.cancelled… for the console and outgoing webhooks; capped. */
    sendEvents: `${prefix}:send-events`,
    /** Set: ids of the sends whose send.started went to the outgoing webhook and whose send.finished is still to be published. */
    eventWebhookSends: `${prefix}:event-webhooks:sends`,
    /** String with a TTL: held by the one process publishing a send's send.finished (app/event-webhooks.ts). */
    eventWebhookFinishing: (sendId: string) => `${prefix}:event-webhooks:finishing:${sendId}`,
    /** Sorted set: issue ids that have been sent, scored by the time of their first send (web archive). */
    sentIssues: `${prefix}:issues:sent`,
    /**
     * Sorted set: ids of the processes that report their metrics (app/metrics.ts), scored by when
     * their last report expires (ms). The metrics keys share `{metrics}`, so a report is one transaction.
     */
    metricsProcesses: `${prefix}:{metrics}:processes`,
    /** Hash with a TTL: one process's last metrics report (role, pid, host, its default metrics as JSON). */
    metricsProcess: (processId: string) => `${prefix}:{metrics}:process:${processId}`,

    /** Hash: schedule id → the schedule (JSON: spec, who made it, its last run). All schedule keys share `{schedules}`. */
    schedules: `${prefix}:{schedules}:all`,
    /** Sorted set: ids of the schedules still to run, scored by their next run (ms); a finished one-off schedule leaves it. */
    scheduleDue: `${prefix}:{schedules}:due`,
    /** String with a TTL: held by the one process running one occurrence (schedule id, its due time in ms) of a schedule. */
    scheduleClaim: (scheduleId: string, dueMs: number) => `${prefix}:{schedules}:claim:${scheduleId}:${dueMs}`,

    /** Set: the emailKey (lower-cased address) of every console user. All account keys share `{accounts}`. */
    accountUsers: `${prefix}:{accounts}:users`,
    /** Hash: one console user (email as given, emailKey, role, passwordHash, createdAt). */
    accountUser: (userKey: string) => `${prefix}:{accounts}:user:${userKey}`,
    /** Hash: API token name → token id, for every token not revoked (names are unique). */
    accountTokenNames: `${prefix}:{accounts}:token-names`,
    /** Hash: one API token (id, name, role, sha256 of the token, createdAt, lastUsedAt); never the token itself. */
    accountToken: (tokenId: string) => `${prefix}:{accounts}:token:${tokenId}`,
    /** Hash: sha256 of a token (hex) → token id: how a bearer token is looked up. */
    accountTokenByHash: `${prefix}:{accounts}:token-by-hash`,
    /** String with a TTL: failed console logins from one client address in the current window. */
    accountLoginFailuresByClient: (client: string) => `${prefix}:{accounts}:login-failures:client:${client}`,
    /** String with a TTL: failed console logins for one account (emailKey), from every address, in the current window. */
    accountLoginFailuresByUser: (userKey: string) => `${prefix}:{accounts}:login-failures:user:${userKey}`,
  } as const;
}

/** The key builders of one prefix. */
export type RedisKeys = ReturnType<typeof redisKeys>;
