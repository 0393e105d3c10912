import { z } from 'zod';
import { SEND_ACTIONS, type SendAction } from '../../app/send-actions.ts';
import { MAX_TEST_SEND_ADDRESSES } from '../../app/test-send.ts';
import { ROLE_PERMISSIONS, ROLES } from '../../core/roles.ts';
import { WEEKDAYS } from '../../core/schedule.ts';
import { LIST_NAME_SHAPE } from '../../core/subscriber.ts';

/**
 * The API's contract in one place: the request schemas the routes validate with (zod), and the
 * OpenAPI 3.1 document served at GET /api/openapi.json, whose request bodies are generated from
 * those same schemas, so the document can't say one thing while the routes check another.
 * tests/integration/api.test.ts checks that every route is in the document and nothing else is.
 */

// ---------------------------------------------------------------------------------------------
// Request schemas

/** The issue id shape of emails/issues/<id>.yaml (content/issue-schema.ts). */
const ISSUE_ID_SHAPE = /^[a-z0-9][a-z0-9-]*$/;
/** Longest pause or cancel reason kept: a sentence for the dashboard, not a report. */
export const MAX_REASON_LENGTH = 500;
/** Most sends GET /api/sends lists at once. */
export const MAX_SENDS_LISTED = 1000;
/** Largest page of the failures table (app/dashboard.ts refuses larger ones too). */
export const MAX_FAILURES_PAGE_SIZE = 500;

/** A field's type error: "is required" when it is absent, else what it must be. */
function requiredOr(message: string): { readonly error: (issue: { readonly input?: unknown }) => string } {
  return { error: (issue) => (issue.input === undefined ? 'is required' : message) };
}

const issueId = z
  .string(requiredOr('must be an issue id, e.g. "vol-138"'))
  .regex(ISSUE_ID_SHAPE, 'must be an issue id: lower-case letters, digits and dashes, e.g. "vol-138"');
const listName = z
  .string(requiredOr('must be a list name, e.g. "weekly"'))
  .regex(LIST_NAME_SHAPE, 'must be a list name: lower-case letters, digits, - and _, e.g. "weekly"');
const isoTime = z
  .string(requiredOr('must be an ISO 8601 time with a zone, e.g. "2026-12-01T08:00:00Z"'))
  .min(1, 'must be an ISO 8601 time with a zone, e.g. "2026-12-01T08:00:00Z"');

/** POST /api/issues/{id}/test-send. */
export const testSendBody = z.strictObject({
  to: z
    .array(z.string({ error: 'must be an email address' }), requiredOr('must be a list of addresses, e.g. ["editor@example.org"]'))
    .min(1, 'must name at least one address')
    .max(MAX_TEST_SEND_ADDRESSES, `may name at most ${MAX_TEST_SEND_ADDRESSES} addresses: a test send is not a send`),
  list: listName.optional().describe('The list whose footer and List-Id the test message shows; weekly when omitted.'),
});

/** POST /api/sends. */
export const startSendBody = z.strictObject({
  issue: issueId.describe('The issue to send, e.g. vol-138.'),
  list: listName.describe('The list to send it to, e.g. weekly.'),
  at: isoTime.optional().describe('Send later, at this time: creates a one-off schedule instead of starting the send now.'),
  resend: z
    .boolean({ error: 'must be true or false' })
    .optional()
    .describe('Send again although this issue already went to this list (every subscriber gets it twice). Not with `at`.'),
});

/** POST /api/sends/{id}/pause|resume|cancel|retry-failed (the body may be left out). */
export const sendActionBody = z.strictObject({
  reason: z
    .string({ error: 'must be a text' })
    .max(MAX_REASON_LENGTH, `must be at most ${MAX_REASON_LENGTH} characters`)
    .optional()
    .describe('Why (pause and cancel): shown on the dashboard with who did it.'),
});

/** POST /api/schedules: one issue at one time, or every week the newest finished issue not yet sent. */
export const scheduleBody = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({
      kind: z.literal('once'),
      issue: issueId,
      list: listName,
      at: isoTime.describe('When, e.g. 2026-12-01T08:00:00Z or 2026-12-01T09:00:00+01:00.'),
    }),
    z.strictObject({
      kind: z.literal('weekly'),
      list: listName,
      day: z.enum(WEEKDAYS, requiredOr(`must be a day of the week: ${WEEKDAYS.join(', ')}`)),
      time: z
        .string(requiredOr('must be a time of day, HH:MM'))
        .regex(/^\d{2}:\d{2}$/, 'must be a time of day on a 24-hour clock, HH:MM, e.g. "08:00"')
        .describe('Wall-clock time in timeZone.'),
      timeZone: z
        .string(requiredOr('must be an IANA time zone, e.g. "Europe/Berlin"'))
        .min(1, 'must be an IANA time zone, e.g. "Europe/Berlin"')
        .describe('An IANA time zone; the schedule keeps its wall-clock time across DST changes.'),
    }),
  ],
  { error: (issue) => (issue.code === 'invalid_union' ? 'must be "once" or "weekly"' : 'must be a JSON object') },
);

/** GET /api/issues/{id}. */
export const issueQuery = z.object({ list: listName.optional() });
/** GET /api/sends. */
export const sendsQuery = z.object({
  limit: z.coerce
    .number({ error: 'must be a whole number' })
    .int('must be a whole number')
    .min(1, 'must be at least 1')
    .max(MAX_SENDS_LISTED, `must be at most ${MAX_SENDS_LISTED}`)
    .optional(),
});
/** GET /api/sends/{id}/failures and failures.csv. */
export const failuresQuery = z.object({
  filter: z.string({ error: 'must be a text' }).max(200, 'must be at most 200 characters').optional(),
  kind: z.string({ error: 'must be a text' }).max(40, 'must be at most 40 characters').optional(),
  page: z.coerce.number({ error: 'must be a whole number' }).int('must be a whole number').min(1, 'must be at least 1').optional(),
  pageSize: z.coerce
    .number({ error: 'must be a whole number' })
    .int('must be a whole number')
    .min(1, 'must be at least 1')
    .max(MAX_FAILURES_PAGE_SIZE, `must be at most ${MAX_FAILURES_PAGE_SIZE}`)
    .optional(),
});

// ---------------------------------------------------------------------------------------------
// The OpenAPI document's types (the part of OpenAPI 3.1 this document uses)

/** A JSON Schema (2020-12, as OpenAPI 3.1 has it). */
export type JsonSchema = { readonly [keyword: string]: unknown };
type Reference = { readonly $ref: string };

interface Parameter {
  readonly name: string;
  readonly in: 'path' | 'query';
  readonly required?: boolean;
  readonly description: string;
  readonly schema: JsonSchema;
}
interface MediaType {
  readonly schema: JsonSchema | Reference;
  readonly example?: unknown;
}
interface RequestBody {
  readonly required: boolean;
  readonly content: Readonly<Record<string, MediaType>>;
}
interface Response {
  readonly description: string;
  readonly content?: Readonly<Record<string, MediaType>>;
  readonly headers?: Readonly<Record<string, { readonly description: string; readonly schema: JsonSchema }>>;
}
/** One route. */
export interface Operation {
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tags: readonly string[];
  /** The permission (core/roles.ts) the route asks for; roles holding it are in the description. */
  readonly 'x-permission': string;
  readonly parameters?: readonly Parameter[];
  readonly requestBody?: RequestBody;
  readonly responses: Readonly<Record<string, Response | Reference>>;
}
/** The methods the API uses. */
export type HttpMethod = 'get' | 'post' | 'delete';
type PathItem = Partial<Record<HttpMethod, Operation>>;

/** An OpenAPI 3.1 document. */
export interface OpenApiDocument {
  readonly openapi: '3.1.0';
  readonly info: { readonly title: string; readonly version: string; readonly description: string };
  readonly security: readonly Readonly<Record<string, readonly string[]>>[];
  readonly tags: readonly { readonly name: string; readonly description: string }[];
  /** Full paths from the server's root (/api/...), with {param} placeholders. */
  readonly paths: Readonly<Record<string, PathItem>>;
  readonly components: {
    readonly securitySchemes: Readonly<Record<string, JsonSchema>>;
    readonly schemas: Readonly<Record<string, JsonSchema>>;
    readonly responses: Readonly<Record<string, Response>>;
  };
}

// ---------------------------------------------------------------------------------------------
// Schemas of what the API answers

/** A request schema as JSON Schema, without the $schema line (the document says the dialect once). */
function bodySchema(schema: z.ZodType): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: 'input', target: 'draft-2020-12' }) as JsonSchema;
  return rest;
}

const ref = (name: string): Reference => ({ $ref: `#/components/schemas/${name}` });
const count = (description: string): JsonSchema => ({ type: 'integer', minimum: 0, description });
const text = (description: string): JsonSchema => ({ type: 'string', description });
const time = (description: string): JsonSchema => ({ type: 'string', format: 'date-time', description });
const object = (properties: Readonly<Record<string, JsonSchema | Reference>>, optional: readonly string[] = []): JsonSchema => ({
  type: 'object',
  properties,
  required: Object.keys(properties).filter((name) => !optional.includes(name)),
});
const rates = (description: string): JsonSchema => ({
  ...object({ bounce: { type: 'number' }, complaint: { type: 'number' }, block: { type: 'number' } }),
  description,
});

const SEND_STATES = ['preparing', 'queued', 'sending', 'paused', 'sent', 'sent-with-failures', 'cancelled'];

const schemas: Record<string, JsonSchema> = {
  Error: {
    ...object({ error: text('What went wrong, and where it is about a field, which one: "<field>: <what is wrong>".') }),
    example: { error: 'list: must be a list name, e.g. "weekly"' },
  },
  IssueEntry: object(
    {
      id: text('The issue id, e.g. vol-138.'),
      title: text('Its title (absent when the file does not load).'),
      status: { type: 'string', enum: ['draft', 'finished'], description: 'Absent when the file does not load.' },
      problem: text('What is wrong with the issue file, when it does not load.'),
      sends: { type: 'array', items: ref('SendSummary'), description: 'Its sends, newest first: when, to which list, and how each ended.' },
    },
    ['title', 'status', 'problem'],
  ),
  IssuePreview: object(
    {
      id: text('The issue id.'),
      title: text('Its title.'),
      status: { type: 'string', enum: ['draft', 'finished'] },
      list: text('The list the preview is filled for (its footer and List-Id).'),
      subject: text('The subject line.'),
      preheader: text('The preview line mail clients show after the subject.'),
      htmlBytes: count('Size of the HTML part in bytes, filled for a sample subscriber.'),
      textBytes: count('Size of the text part in bytes.'),
      gmailClipBytes: count('The size above which Gmail clips a message (102 KB) and hides the rest, unsubscribe link included.'),
      clippedByGmail: { type: 'boolean', description: 'Whether htmlBytes is over gmailClipBytes.' },
      warnings: { type: 'array', items: { type: 'string' }, description: 'What the compiler warns about.' },
      text: text('The text part, as the sample subscriber gets it.'),
    },
    [],
  ),
  TestSendResult: object({
    accepted: { type: 'array', items: { type: 'string' }, description: 'Addresses the SMTP server accepted (answered 250): not proof of delivery.' },
    rejected: { type: 'array', items: object({ address: text('The address.'), reason: text('The SMTP reply or the error.') }) },
  }),
  SendSummary: object(
    {
      sendId: text('e.g. vol-138.weekly.1'),
      issueId: text('The issue sent.'),
      list: text('The list it went to.'),
      state: { type: 'string', enum: SEND_STATES },
      createdAt: time('When the send started.'),
      finishedAt: time('When it ended; absent while it runs.'),
      total: count('Recipients fanned out so far.'),
      accepted: count('Messages the SMTP server accepted (answered 250).'),
      failed: count('Recipients that failed.'),
      skipped: count('Recipients skipped (suppressed, unsubscribed, cancelled).'),
      bounced: count('Recipients with a hard bounce.'),
      complained: count('Recipients who complained.'),
      pending: count('Recipients not yet accepted, failed or skipped.'),
      ratePerSec: { type: 'number', minimum: 0, description: 'Recipients finished per second over the last minute.' },
      etaSeconds: { type: 'number', minimum: 0, description: 'pending / rate; absent when the rate is 0, or the send is paused or over.' },
      rates: rates('Hard bounces, complaints and blocks as shares of the messages answered so far.'),
      thresholds: rates('The breaker thresholds the rates are set against.'),
      stateReason: {
        ...object({ by: { type: 'string', enum: ['ops', 'breaker'] }, who: text('Who did it (ops).'), reason: text('Why.'), at: time('When.') }, ['who']),
        description: 'Who paused or cancelled the send, and why; absent while it runs.',
      },
      heldDomains: { type: 'array', items: { type: 'string' }, description: 'Recipient domains a breaker holds.' },
    },
    ['finishedAt', 'etaSeconds', 'stateReason'],
  ),
  SendDetail: object({
    summary: ref('SendSummary'),
    series: {
      type: 'array',
      description: 'Cumulative progress, one point per 10-second bucket.',
      items: object({
        at: time('End of the bucket.'),
        accepted: count('Accepted so far.'),
        failed: count('Failed so far.'),
        skipped: count('Skipped so far.'),
      }),
    },
    domains: {
      type: 'array',
      description: 'Per recipient domain, the busiest first.',
      items: object({
        domain: text('The recipient domain.'),
        accepted: count('Accepted.'),
        failed: count('Failed.'),
        skipped: count('Skipped.'),
        bounced: count('Hard bounces.'),
        complained: count('Complaints.'),
      }),
    },
  }),
  FailuresPage: object({
    rows: {
      type: 'array',
      items: object(
        {
          subscriberId: text('The subscriber.'),
          email: text('The address, or "(deleted)".'),
          reason: text('What the receiving server or the report said.'),
          source: text('smtp, dsn, arf, a provider webhook, or worker.'),
          kind: text('hard, soft, block, complaint, unsubscribe, or failed.'),
          attempts: count('SMTP attempts recorded with the failure.'),
          at: time('When.'),
        },
        ['at'],
      ),
    },
    total: count('Rows matching the filter, on every page.'),
    page: { type: 'integer', minimum: 1 },
    pageSize: { type: 'integer', minimum: 1 },
  }),
  StartedSend: object(
    {
      send: ref('SendSummary'),
      resumed: { type: 'boolean', description: 'True when an interrupted fan-out of the same send was finished instead of starting a new send.' },
      warnings: { type: 'array', items: { type: 'string' }, description: 'What the compiler warns about.' },
    },
    [],
  ),
  ScheduledSend: object({ schedule: ref('Schedule') }),
  SendActionResult: object(
    {
      action: { type: 'string', enum: [...SEND_ACTIONS] },
      sendId: text('The send.'),
      changed: { type: 'boolean', description: 'pause, resume, cancel: false when the send already was so.' },
      jobsPromoted: count('resume, cancel: jobs brought forward.'),
      skipped: count('cancel: recipients not yet sent that ended as skipped.'),
      requeued: count('retry-failed: recipients whose temporary failures are tried again.'),
      repaired: count('retry-failed: queued recipients whose job would not run, given a job again.'),
      acceptedLate: count('retry-failed: recipients accepted but not recorded so, recorded now (not sent again).'),
    },
    ['changed', 'jobsPromoted', 'skipped', 'requeued', 'repaired', 'acceptedLate'],
  ),
  SendActionResponse: object({ result: ref('SendActionResult'), send: ref('SendSummary') }),
  ScheduleSpec: bodySchema(scheduleBody),
  Schedule: object(
    {
      id: text('e.g. sch-1a2b3c4d'),
      spec: ref('ScheduleSpec'),
      nextRunAt: time('When it runs next; absent once a one-off schedule has run.'),
      createdBy: text('Who made it: console:<email>, api:<token name> or cli.'),
      createdAt: time('When it was made.'),
      lastRun: {
        ...object(
          {
            at: time('When it ran.'),
            outcome: text('sent, nothing-new (no finished issue not yet sent to the list), refused or missed.'),
            sendId: text('The send it started.'),
            issue: text('The issue it sent.'),
            message: text('Why nothing was sent.'),
          },
          ['sendId', 'issue', 'message'],
        ),
        description: 'Its last occurrence; absent before the first.',
      },
    },
    ['nextRunAt', 'lastRun'],
  ),
};

// ---------------------------------------------------------------------------------------------
// The routes

const json = (schema: JsonSchema | Reference, example?: unknown): Readonly<Record<string, MediaType>> => ({
  'application/json': example === undefined ? { schema } : { schema, example },
});
const ok = (description: string, schema: JsonSchema | Reference): Response => ({ description, content: json(schema) });
const error = (name: 'BadRequest' | 'Unauthorized' | 'Forbidden' | 'NotFound' | 'Conflict' | 'BrokenIssue' | 'TooManyTestSends'): Reference => ({
  $ref: `#/components/responses/${name}`,
});
/** The errors every guarded route can answer. */
const AUTH_ERRORS = { '401': error('Unauthorized'), '403': error('Forbidden') } as const;

const idParameter = (description: string): Parameter => ({ name: 'id', in: 'path', required: true, description, schema: { type: 'string' } });
const SEND_ID = idParameter('The send id, e.g. vol-138.weekly.1.');
const ISSUE_ID = idParameter('The issue id, e.g. vol-138.');
const FAILURE_QUERY: readonly Parameter[] = [
  {
    name: 'filter',
    in: 'query',
    description: 'Keeps rows whose address, reason or subscriber id contains this (any case).',
    schema: { type: 'string', maxLength: 200 },
  },
  { name: 'kind', in: 'query', description: 'Keeps one kind: hard, soft, block, complaint, unsubscribe or failed.', schema: { type: 'string', maxLength: 40 } },
];

const SEND_ACTION_TEXT: Readonly<Record<SendAction, { readonly summary: string; readonly description: string }>> = {
  pause: {
    summary: 'Pause a send',
    description:
      'No new message of the send starts once this answers; messages already at the SMTP server finish. Other sends go on. Pausing a paused send changes nothing (changed: false).',
  },
  resume: { summary: 'Resume a paused send', description: 'Goes on where it stopped and releases the domains its breakers hold.' },
  cancel: {
    summary: 'Cancel a send for good',
    description: 'Recipients not yet sent end as skipped, reason cancelled. A cancelled send cannot be resumed or retried (409).',
  },
  'retry-failed': {
    summary: 'Try the failed recipients again',
    description: 'Requeues recipients whose attempts ran out on temporary errors; permanent failures stay failed, accepted recipients are never mailed again.',
  },
};

function sendActionOperation(action: SendAction): Operation {
  return {
    operationId: `${action.replace(/-(\w)/g, (_match, letter: string) => letter.toUpperCase())}Send`,
    ...SEND_ACTION_TEXT[action],
    tags: ['sends'],
    'x-permission': 'sends.control',
    parameters: [SEND_ID],
    requestBody: { required: false, content: json(bodySchema(sendActionBody), action === 'pause' ? { reason: 'wrong link in the intro' } : undefined) },
    responses: {
      '200': ok('What the action did, and the send afterwards.', ref('SendActionResponse')),
      '400': error('BadRequest'),
      ...AUTH_ERRORS,
      '404': error('NotFound'),
      '409': error('Conflict'),
    },
  };
}

/** Which role holds which permission, from core/roles.ts: each route names its permission in x-permission. */
const ROLES_TEXT = `Roles and their permissions: ${ROLES.map((role) => `${role} (${ROLE_PERMISSIONS[role].join(', ')})`).join('; ')}.`;

/** The document served at GET /api/openapi.json. */
export const API_DOCUMENT: OpenApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Newsletter pipeline API',
    version: '1',
    description:
      'Send issues, watch and steer sends, and manage schedules. Authenticate with `Authorization: Bearer <token>` ' +
      '(`newsletter tokens create --name NAME --role ROLE`). A logged-in console session works too; its POST and DELETE ' +
      'requests need the X-CSRF-Token header (the console page has it in <meta name="csrf-token">). Every error is JSON ' +
      '`{ "error": "<message>" }`: 400 a malformed request (the message names the field), 401 no or unknown credentials, ' +
      '403 the role lacks the permission (or a session request without a valid CSRF token), 404 no such issue, send, ' +
      'schedule or route, 409 refused in the current state (a double send, a draft, a cancelled or finished send), ' +
      '422 the issue file or a template is broken, 429 too many test sends (TEST_SENDS_PER_HOUR per user or token). ' +
      ROLES_TEXT,
  },
  security: [{ bearerAuth: [] }, { sessionCookie: [] }],
  tags: [
    { name: 'issues', description: 'The issues in ISSUES_DIR: list, preview, test send.' },
    { name: 'sends', description: 'Start a send, watch it, and pause, resume, cancel or retry it.' },
    { name: 'schedules', description: 'Sends at a given time, or weekly.' },
    { name: 'meta', description: 'This document.' },
  ],
  paths: {
    '/api/openapi.json': {
      get: {
        operationId: 'openApiDocument',
        summary: 'This document',
        tags: ['meta'],
        'x-permission': 'issues.read',
        responses: { '200': ok('The OpenAPI 3.1 document.', { type: 'object' }), ...AUTH_ERRORS },
      },
    },
    '/api/issues': {
      get: {
        operationId: 'listIssues',
        summary: 'Every issue with its status and sends',
        tags: ['issues'],
        'x-permission': 'issues.read',
        responses: { '200': ok('The issues, by id.', object({ issues: { type: 'array', items: ref('IssueEntry') } })), ...AUTH_ERRORS },
      },
    },
    '/api/issues/{id}': {
      get: {
        operationId: 'previewIssue',
        summary: "An issue's preview data: subject, preheader, sizes, the text part",
        description: 'Compiled exactly as a send would compile it, filled for a sample subscriber.',
        tags: ['issues'],
        'x-permission': 'issues.preview',
        parameters: [ISSUE_ID, { name: 'list', in: 'query', description: 'The list to fill the footer for; weekly when omitted.', schema: { type: 'string' } }],
        responses: {
          '200': ok('The preview data.', ref('IssuePreview')),
          '400': error('BadRequest'),
          ...AUTH_ERRORS,
          '404': error('NotFound'),
          '422': error('BrokenIssue'),
        },
      },
    },
    '/api/issues/{id}/test-send': {
      post: {
        operationId: 'testSendIssue',
        summary: 'Send the issue to a few addresses, outside the bulk queue',
        description:
          `At most ${MAX_TEST_SEND_ADDRESSES} addresses; the subject starts with "[TEST] ". Records no send. Drafts may be test-sent. ` +
          "Each user or token may make TEST_SENDS_PER_HOUR test sends an hour (20 unless the server sets another number), the console's included; the next answers 429.",
        tags: ['issues'],
        'x-permission': 'issues.preview',
        parameters: [ISSUE_ID],
        requestBody: { required: true, content: json(bodySchema(testSendBody), { to: ['editor@example.org'] }) },
        responses: {
          '200': ok('What the SMTP server answered for each address.', ref('TestSendResult')),
          '400': error('BadRequest'),
          ...AUTH_ERRORS,
          '404': error('NotFound'),
          '422': error('BrokenIssue'),
          '429': error('TooManyTestSends'),
        },
      },
    },
    '/api/sends': {
      get: {
        operationId: 'listSends',
        summary: 'Every send, newest first, with its live state and progress',
        tags: ['sends'],
        'x-permission': 'sends.read',
        parameters: [
          { name: 'limit', in: 'query', description: 'How many sends; 50 when omitted.', schema: { type: 'integer', minimum: 1, maximum: MAX_SENDS_LISTED } },
        ],
        responses: { '200': ok('The sends.', object({ sends: { type: 'array', items: ref('SendSummary') } })), '400': error('BadRequest'), ...AUTH_ERRORS },
      },
      post: {
        operationId: 'startSend',
        summary: 'Send a finished issue to a list, now or at a time',
        description:
          'Without `at`: starts the send and answers 201 with it once every recipient is queued. With `at`: creates a one-off schedule and answers 201 with it. ' +
          'Refuses (409) a draft, an issue already sent to the list (unless `resend`), or a list without subscribers. ' +
          'With `at`, the same refusals are 409 (a draft, an issue already sent to the list or already scheduled for it, a list without subscribers), ' +
          'and a time that is malformed or in the past is 400.',
        tags: ['sends'],
        'x-permission': 'sends.start',
        requestBody: { required: true, content: json(bodySchema(startSendBody), { issue: 'vol-138', list: 'weekly' }) },
        responses: {
          '201': {
            description: 'The send (or, with `at`, the schedule).',
            headers: { Location: { description: 'The new send or schedule.', schema: { type: 'string' } } },
            content: json({ oneOf: [ref('StartedSend'), ref('ScheduledSend')] }),
          },
          '400': error('BadRequest'),
          ...AUTH_ERRORS,
          '404': error('NotFound'),
          '409': error('Conflict'),
          '422': error('BrokenIssue'),
        },
      },
    },
    '/api/sends/{id}': {
      get: {
        operationId: 'getSend',
        summary: 'One send: summary, progress over time, per-domain breakdown',
        tags: ['sends'],
        'x-permission': 'sends.read',
        parameters: [SEND_ID],
        responses: { '200': ok('The send.', ref('SendDetail')), ...AUTH_ERRORS, '404': error('NotFound') },
      },
    },
    '/api/sends/{id}/failures': {
      get: {
        operationId: 'sendFailures',
        summary: "One page of the send's failures table",
        tags: ['sends'],
        'x-permission': 'sends.failures',
        parameters: [
          SEND_ID,
          ...FAILURE_QUERY,
          { name: 'page', in: 'query', description: 'From 1; 1 when omitted.', schema: { type: 'integer', minimum: 1 } },
          {
            name: 'pageSize',
            in: 'query',
            description: 'Rows a page; 50 when omitted.',
            schema: { type: 'integer', minimum: 1, maximum: MAX_FAILURES_PAGE_SIZE },
          },
        ],
        responses: { '200': ok('The page.', ref('FailuresPage')), '400': error('BadRequest'), ...AUTH_ERRORS, '404': error('NotFound') },
      },
    },
    '/api/sends/{id}/failures.csv': {
      get: {
        operationId: 'sendFailuresCsv',
        summary: "The send's failures as CSV",
        description: 'Columns subscriber_id, email, kind, source, reason, attempts, at (RFC 4180).',
        tags: ['sends'],
        'x-permission': 'sends.failures',
        parameters: [SEND_ID, ...FAILURE_QUERY],
        responses: {
          '200': { description: 'The CSV, as an attachment.', content: { 'text/csv': { schema: { type: 'string' } } } },
          '400': error('BadRequest'),
          ...AUTH_ERRORS,
          '404': error('NotFound'),
        },
      },
    },
    ...Object.fromEntries(SEND_ACTIONS.map((action) => [`/api/sends/{id}/${action}`, { post: sendActionOperation(action) }])),
    '/api/schedules': {
      get: {
        operationId: 'listSchedules',
        summary: 'Every schedule, the next to run first',
        tags: ['schedules'],
        'x-permission': 'schedules.read',
        responses: { '200': ok('The schedules.', object({ schedules: { type: 'array', items: ref('Schedule') } })), ...AUTH_ERRORS },
      },
      post: {
        operationId: 'createSchedule',
        summary: 'Schedule a send: one issue at a time, or weekly',
        description:
          'A weekly schedule sends the newest finished issue not yet sent to its list, never the same issue twice; when there is none, nothing is sent and the run says so. ' +
          'Refuses a bad time, day or time zone or a time in the past (400), and a list without subscribers or, for a one-off schedule, a draft or an issue already sent or scheduled (409).',
        tags: ['schedules'],
        'x-permission': 'schedules.manage',
        requestBody: {
          required: true,
          content: json(ref('ScheduleSpec'), { kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: 'Europe/Berlin' }),
        },
        responses: {
          '201': {
            description: 'The schedule.',
            headers: { Location: { description: 'The new schedule.', schema: { type: 'string' } } },
            content: json(object({ schedule: ref('Schedule') })),
          },
          '400': error('BadRequest'),
          ...AUTH_ERRORS,
          '404': error('NotFound'),
          '409': error('Conflict'),
          '422': error('BrokenIssue'),
        },
      },
    },
    '/api/schedules/{id}': {
      delete: {
        operationId: 'deleteSchedule',
        summary: 'Delete a schedule',
        tags: ['schedules'],
        'x-permission': 'schedules.manage',
        parameters: [idParameter('The schedule id, e.g. sch-1a2b3c4d.')],
        responses: { '204': { description: 'Deleted.' }, ...AUTH_ERRORS, '404': error('NotFound') },
      },
    },
  },
  components: {
    securitySchemes: {
      bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API token from `newsletter tokens create --name NAME --role ROLE`.' },
      sessionCookie: {
        type: 'apiKey',
        in: 'cookie',
        name: 'nl_session',
        description: "The console's login session (POST /admin/login); POST and DELETE also need the X-CSRF-Token header.",
      },
    },
    schemas,
    responses: {
      BadRequest: { description: 'The request is malformed: the message names the field and what is wrong with it.', content: json(ref('Error')) },
      Unauthorized: {
        description: 'No credentials, or a token that is unknown or revoked.',
        headers: { 'WWW-Authenticate': { description: 'Bearer realm="newsletter"', schema: { type: 'string' } } },
        content: json(ref('Error')),
      },
      Forbidden: { description: "The role lacks the route's permission, or a session request came without a valid X-CSRF-Token.", content: json(ref('Error')) },
      NotFound: { description: 'No such issue, send, schedule or route.', content: json(ref('Error')) },
      BrokenIssue: {
        description: 'The issue file does not match the issue schema, or a template does not compile: fix the file (the message names each field).',
        content: json(ref('Error')),
      },
      Conflict: {
        description:
          'Refused in the current state: a double send, a draft, an empty list, a cancelled or finished send, a send that is not the latest of its issue and list.',
        content: json(ref('Error')),
      },
      TooManyTestSends: {
        description: 'This user or token made TEST_SENDS_PER_HOUR test sends within the hour (the console and the API count together).',
        headers: { 'Retry-After': { description: 'Seconds until the next test send is allowed.', schema: { type: 'integer', minimum: 1 } } },
        content: json(ref('Error')),
      },
    },
  },
};
