import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Issue } from '../../content/issue-schema.ts';
import { listIssueIds, loadIssue } from '../../content/load-issue.ts';
import { listSendSummaries, type SendSummary } from '../../app/dashboard.ts';
import { buildIssuePreview, SAMPLE_RECIPIENT } from '../../app/preview.ts';
import { startSend } from '../../app/start-send.ts';
import { countSubscribers, listNames as listsOf } from '../../app/subscribers.ts';
import { testSend, MAX_TEST_SEND_ADDRESSES, type TestSendResult } from '../../app/test-send.ts';
import { UserFacingError } from '../../core/errors.ts';
import { can } from '../../core/roles.ts';
import { isFinalSendState } from '../../core/send-status.ts';
import { DEFAULT_LIST, LIST_NAME_SHAPE } from '../../core/subscriber.ts';
import { GMAIL_CLIP_BYTES, issueSubject } from '../../render/compile-issue.ts';
import type { Services } from '../../services.ts';
import { csrfGuard, requirePermission } from '../auth.ts';
import { httpErrorText } from '../error-text.ts';
import { escape, sendHtml } from '../public/page.ts';
import { testSendLimiter } from '../test-send-limit.ts';
import { actorName, csrfField, formField, notice, problem, selectOptions, sendRefusalPage, timeTag } from './editor-pages.ts';
import { sendConsolePage } from './layout.ts';

/**
 * The preview document's own policy: the email's inline styles and nothing else. No script runs
 * (sandbox without allow-scripts), nothing loads from outside (a remote image or web font of an
 * issue shows as missing here, which is what the editor should notice), and it may be framed by
 * the console only. Links open in a new tab, as in a mail client (allow-popups), outside the sandbox.
 */
export const PREVIEW_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; " +
  'sandbox allow-popups allow-popups-to-escape-sandbox';

/**
 * Sends the issues page lists with each issue, newest first: far more than a newsletter makes in
 * years (one a week per list), and a bound on what one page load reads.
 */
const SENDS_SHOWN_ON_ISSUES = 1000;

/** The issues, their previews, the test send and the send with its confirmation. */
export function registerIssuePages(scope: FastifyInstance, services: Services): void {
  const { config } = services;
  const spendTestSend = testSendLimiter(scope, services);

  scope.get('/admin/issues', { preHandler: requirePermission('issues.read') }, async (request, reply) => {
    const ids = await listIssueIds(config.issuesDir);
    const [loaded, sends] = await Promise.all([
      Promise.all(
        ids.map((id) =>
          loadIssue(config.issuesDir, id).then(
            (issue) => ({ id, issue }),
            (error: unknown) => ({ id, error: brokenIssueMessage(error) }),
          ),
        ),
      ),
      listSendSummaries(services, { limit: SENDS_SHOWN_ON_ISSUES }),
    ]);
    const sendsByIssue = new Map<string, SendSummary[]>();
    for (const send of sends) sendsByIssue.set(send.issueId, [...(sendsByIssue.get(send.issueId) ?? []), send]);
    const mayPreview = request.actor !== undefined && can(request.actor.role, 'issues.preview');
    // Broken files first (they need the editor), then the newest issue.
    const rows = loaded.sort((a, b) => {
      if ('error' in a || 'error' in b) return 'error' in a && 'error' in b ? a.id.localeCompare(b.id) : 'error' in a ? -1 : 1;
      return b.issue.dates.to.localeCompare(a.issue.dates.to) || b.id.localeCompare(a.id);
    });
    const body =
      rows.length === 0
        ? `<p>There are no issues yet: add one as a YAML file to the issues folder (ISSUES_DIR).</p>`
        : `<div class="table-wrap"><table class="issues"><thead><tr><th>Issue</th><th>Title</th><th>Status</th><th>Sends</th></tr></thead><tbody>` +
          rows
            .map((row) => {
              const id = mayPreview ? `<a href="/admin/issues/${escape(row.id)}">${escape(row.id)}</a>` : escape(row.id);
              if ('error' in row) return `<tr><td>${id}</td><td colspan="3" class="problem pre-line">${escape(row.error)}</td></tr>`;
              const { issue } = row;
              return (
                `<tr><td>${id}<br><small>${escape(issue.dates.from)} – ${escape(issue.dates.to)}</small></td><td>${escape(issue.title)}</td>` +
                `<td><span class="state state-${escape(issue.status)}">${escape(issue.status)}</span></td><td>${sendsCell(sendsByIssue.get(issue.id) ?? [])}</td></tr>`
              );
            })
            .join('') +
          `</tbody></table></div>`;
    return sendConsolePage(reply, request, { title: 'Issues', body });
  });

  scope.get('/admin/issues/:id', { preHandler: requirePermission('issues.preview') }, async (request, reply) => {
    const issueId = (request.params as { id: string }).id;
    const list = formField(request.query, 'list') || DEFAULT_LIST;
    let preview: Awaited<ReturnType<typeof buildIssuePreview>>;
    try {
      if (!LIST_NAME_SHAPE.test(list)) throw new UserFacingError(`"${list}" is not a list name: lower-case letters, digits, - and _ (e.g. weekly).`);
      preview = await buildIssuePreview(config, issueId, list);
    } catch (error) {
      return sendRefusalPage(reply, request, error, { title: `Cannot preview ${issueId}`, back: { href: '/admin/issues', label: 'Back to the issues' } });
    }
    return sendConsolePage(reply, request, {
      title: `Preview: ${preview.issue.id}`,
      body: previewBody(request, reply, { preview, list, lists: await listNames(services) }),
    });
  });

  scope.get('/admin/issues/:id/preview.html', { preHandler: requirePermission('issues.preview') }, async (request, reply) => {
    const issueId = (request.params as { id: string }).id;
    const list = formField(request.query, 'list') || DEFAULT_LIST;
    try {
      if (!LIST_NAME_SHAPE.test(list)) throw new UserFacingError(`"${list}" is not a list name.`);
      const { html } = await buildIssuePreview(config, issueId, list);
      // A sandboxed document can't be origin-keyed: helmet's Origin-Agent-Cluster would only make Chromium warn.
      reply.removeHeader('origin-agent-cluster');
      return sendHtml(reply, 200, html, { cacheControl: 'no-store', csp: PREVIEW_CSP });
    } catch (error) {
      return sendRefusalPage(reply, request, error, { title: `Cannot preview ${issueId}` });
    }
  });

  scope.post('/admin/issues/:id/test-send', { preHandler: [requirePermission('issues.preview'), csrfGuard(scope)] }, async (request, reply) => {
    const issueId = (request.params as { id: string }).id;
    const list = formField(request.body, 'list') || DEFAULT_LIST;
    const typed = formField(request.body, 'to');
    const back = { href: `/admin/issues/${encodeURIComponent(issueId)}?list=${encodeURIComponent(list)}`, label: `Back to the preview of ${issueId}` };
    // Nothing typed: the logged-in editor's own inbox. A token's name is no address, so it must say.
    const to = typed ? typed.split(/[\s,;]+/).filter((address) => address !== '') : request.actor?.kind === 'user' ? [request.actor.name] : [];
    let result: TestSendResult;
    try {
      // Counted after the guards (a refused request spends nothing), before anything goes out.
      await spendTestSend(request);
      result = await testSend(services, { issueId, to, list });
    } catch (error) {
      return sendRefusalPage(reply, request, error, { title: 'Test send refused', back, after: testSendForm(reply, request, { issueId, list, typed }) });
    }
    request.log.info(
      { issueId, list, by: actorName(request), accepted: result.accepted.length, rejected: result.rejected.length },
      'test send from the console',
    );
    return sendConsolePage(reply, request, {
      title: `Test send of ${issueId}`,
      body: testSendResultBody(result) + `<p><a href="${escape(back.href)}">${escape(back.label)}</a></p>`,
    });
  });

  scope.get('/admin/issues/:id/send', { preHandler: requirePermission('sends.start') }, async (request, reply) => {
    const issueId = (request.params as { id: string }).id;
    const lists = await listNames(services);
    const list = formField(request.query, 'list') || (lists.includes(DEFAULT_LIST) || lists.length === 0 ? DEFAULT_LIST : lists[0]!);
    let issue: Issue;
    try {
      if (!LIST_NAME_SHAPE.test(list)) throw new UserFacingError(`"${list}" is not a list name: lower-case letters, digits, - and _ (e.g. weekly).`);
      issue = await loadIssue(config.issuesDir, issueId);
    } catch (error) {
      return sendRefusalPage(reply, request, error, { title: `Cannot send ${issueId}`, back: { href: '/admin/issues', label: 'Back to the issues' } });
    }
    const check = await checkSend(services, issue, list);
    return sendConsolePage(reply, request, {
      status: check.refusal ? 409 : 200,
      title: `Send ${issue.id}`,
      body: confirmationBody(reply, { issue, list, lists, check, subject: issueSubject(issue, config.mail.newsletterName) }),
    });
  });

  scope.post('/admin/issues/:id/send', { preHandler: [requirePermission('sends.start'), csrfGuard(scope)] }, async (request, reply) => {
    const issueId = (request.params as { id: string }).id;
    const list = formField(request.body, 'list');
    const back = { href: `/admin/issues/${encodeURIComponent(issueId)}/send?list=${encodeURIComponent(list)}`, label: 'Back to the confirmation' };
    try {
      if (formField(request.body, 'confirm') !== 'yes') throw new UserFacingError('The send was not confirmed: use the button on the confirmation page.');
      if (!LIST_NAME_SHAPE.test(list)) throw new UserFacingError(`"${list}" is not a list name: lower-case letters, digits, - and _ (e.g. weekly).`);
      const { sendId, resumed } = await startSend(services, { issueId, list, resend: false, requestedBy: actorName(request) });
      request.log.info({ issueId, list, sendId, resumed, by: actorName(request) }, 'send started from the console');
      return reply.redirect(`/admin/sends/${encodeURIComponent(sendId)}`, 303);
    } catch (error) {
      return sendRefusalPage(reply, request, error, { title: `Send of ${issueId} refused`, back });
    }
  });
}

/** The names of the lists that have (or had) subscribers. */
export async function listNames(services: Services): Promise<string[]> {
  return listsOf(services.subscribers);
}

/** An issue file that does not load, as one message for its row (the file, each bad field, the reason). */
function brokenIssueMessage(error: unknown): string {
  if (error instanceof UserFacingError) return httpErrorText(error);
  throw error;
}

/** One issue's sends, newest first: when, to which list, and how it ended (or where it stands). */
function sendsCell(sends: readonly SendSummary[]): string {
  if (sends.length === 0) return '<small>not sent</small>';
  return (
    `<ul class="sends">` +
    sends
      .map((send) => {
        const over = isFinalSendState(send.state);
        const counts = `${send.accepted} accepted · ${send.failed} failed · ${send.skipped} skipped` + (over ? '' : ` · ${send.pending} pending`);
        return (
          `<li>${timeTag(send.createdAt)} to <b>${escape(send.list)}</b>: <a href="/admin/sends/${encodeURIComponent(send.sendId)}"><span class="state state-${escape(send.state)}">${escape(send.state)}</span></a>` +
          `<br><small>${escape(counts)}${over && send.finishedAt ? `, ended ${timeTag(send.finishedAt)}` : ''}</small></li>`
        );
      })
      .join('') +
    `</ul>`
  );
}

/** Kilobytes with one decimal, as the size line and the Gmail limit are compared. */
function kb(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KB`;
}

function previewBody(
  request: FastifyRequest,
  reply: FastifyReply,
  options: { readonly preview: Awaited<ReturnType<typeof buildIssuePreview>>; readonly list: string; readonly lists: readonly string[] },
): string {
  const { preview, list } = options;
  const { issue, compiled } = preview;
  const htmlBytes = Buffer.byteLength(preview.html);
  const clipped = htmlBytes > GMAIL_CLIP_BYTES;
  const share = Math.min(100, Math.round((htmlBytes / GMAIL_CLIP_BYTES) * 100));
  const frameSrc = `/admin/issues/${encodeURIComponent(issue.id)}/preview.html?list=${encodeURIComponent(list)}`;
  const maySend = request.actor !== undefined && can(request.actor.role, 'sends.start');
  const sendAction =
    issue.status !== 'finished'
      ? `<p>This issue is a <b>${escape(issue.status)}</b>: it can be previewed and test-sent, not sent. Set <code>status: finished</code> in its file when it is ready.</p>`
      : maySend
        ? `<div class="actions"><a class="button" href="/admin/issues/${encodeURIComponent(issue.id)}/send?list=${encodeURIComponent(list)}">Send to a list…</a></div>`
        : '';
  const lists = options.lists.includes(list) ? options.lists : [...options.lists, list];
  return (
    `<dl class="facts">` +
    `<dt>Subject</dt><dd class="subject">${escape(compiled.subject)}</dd>` +
    `<dt>Preheader</dt><dd class="preheader">${escape(issue.preheader)}</dd>` +
    `<dt>Status</dt><dd><span class="state state-${escape(issue.status)}">${escape(issue.status)}</span></dd>` +
    `<dt>HTML size</dt><dd><span class="html-size${clipped ? ' over' : ''}">${escape(kb(htmlBytes))}</span> of the ${escape(kb(GMAIL_CLIP_BYTES))} at which Gmail clips a message` +
    `<div class="bar${clipped ? ' over' : ''}" role="img" aria-label="${share}% of Gmail's clipping limit"><span style="width:${share}%"></span></div></dd>` +
    `</dl>` +
    (clipped
      ? problem(
          `The HTML is ${kb(htmlBytes)}, over Gmail's ${kb(GMAIL_CLIP_BYTES)}: Gmail will cut the message and hide the rest behind "View entire message", the unsubscribe link included. Shorten the issue.`,
        )
      : '') +
    compiled.warnings.map((warning) => problem(warning)).join('') +
    sendAction +
    `<form method="get" action="/admin/issues/${encodeURIComponent(issue.id)}" class="inline-form"><label>Footer and List-Id of the list <select name="list">${selectOptions(lists, list)}</select></label><button type="submit" class="secondary">Show</button></form>` +
    `<h2>HTML, as ${escape(preview.issue.id)} reaches ${escape(SAMPLE_RECIPIENT.name)} (a sample subscriber)</h2>` +
    `<div class="previews">` +
    `<figure><figcaption>Phone, 375 px</figcaption><iframe class="phone" src="${escape(frameSrc)}" title="The email at phone width" sandbox="allow-popups allow-popups-to-escape-sandbox" loading="lazy"></iframe></figure>` +
    `<figure class="wide"><figcaption>Desktop, 1280 px (scrolls sideways on a narrower screen)</figcaption><iframe class="desktop" src="${escape(frameSrc)}" title="The email at desktop width" sandbox="allow-popups allow-popups-to-escape-sandbox" loading="lazy"></iframe></figure>` +
    `</div>` +
    `<h2>Text part</h2><pre class="text-part">${escape(preview.text)}</pre>` +
    `<h2>Test send</h2>` +
    testSendForm(reply, request, { issueId: issue.id, list, typed: '' })
  );
}

function testSendForm(
  reply: FastifyReply,
  request: FastifyRequest,
  options: { readonly issueId: string; readonly list: string; readonly typed: string },
): string {
  const own = request.actor?.kind === 'user' ? request.actor.name : undefined;
  return (
    `<form method="post" action="/admin/issues/${encodeURIComponent(options.issueId)}/test-send" class="stack">` +
    csrfField(reply) +
    `<input type="hidden" name="list" value="${escape(options.list)}">` +
    `<label>To <input type="text" name="to" inputmode="email" autocomplete="off" value="${escape(options.typed)}" placeholder="${escape(own ?? 'editor@example.org')}"></label>` +
    `<p class="hint">Up to ${MAX_TEST_SEND_ADDRESSES} addresses, separated by commas or spaces${own ? `; empty sends it to you (${escape(own)})` : ''}. ` +
    `The subject starts with [TEST]; it goes straight to the SMTP server, outside the send queue, and is recorded nowhere.</p>` +
    `<button type="submit">Send a test</button></form>`
  );
}

function testSendResultBody(result: TestSendResult): string {
  const accepted =
    result.accepted.length === 0
      ? ''
      : notice(
          `The SMTP server accepted the test for ${result.accepted.length === 1 ? 'this address' : `these ${result.accepted.length} addresses`} (accepted is not yet delivered):`,
        ) + `<ul class="accepted">${result.accepted.map((address) => `<li>${escape(address)}</li>`).join('')}</ul>`;
  const rejected =
    result.rejected.length === 0
      ? ''
      : problem(`The SMTP server refused the test for ${result.rejected.length === 1 ? 'this address' : `these ${result.rejected.length} addresses`}:`) +
        `<div class="table-wrap"><table class="rejected"><thead><tr><th>Address</th><th>Reason</th></tr></thead><tbody>` +
        result.rejected.map(({ address, reason }) => `<tr><td>${escape(address)}</td><td>${escape(reason)}</td></tr>`).join('') +
        `</tbody></table></div>`;
  return accepted + rejected;
}

/** Whether an issue may go to a list now, as startSend will decide, told up front. */
interface SendCheck {
  /** Why the send would be refused; undefined when it can go. */
  readonly refusal: string | undefined;
  /** The send this one would repeat or resume, if any. */
  readonly existing: { readonly sendId: string; readonly state: string } | undefined;
  /** An earlier send of the issue to the list whose queueing was interrupted: confirming finishes queueing it. */
  readonly resumes: boolean;
  readonly counts: Awaited<ReturnType<typeof countSubscribers>> | undefined;
}

/**
 * The refusals of startSend, checked before the editor confirms: a draft, a list without
 * subscribers, an issue already sent to the list. The POST is refused again by startSend itself,
 * so two editors confirming at once still make one send.
 */
async function checkSend(services: Services, issue: Issue, list: string): Promise<SendCheck> {
  const counts = (await services.subscribers.listExists(list)) ? await countSubscribers(services.subscribers, list) : undefined;
  const existingId = await services.sends.latestId(issue.id, list);
  const record = existingId ? await services.sends.get(existingId) : undefined;
  const existing = record ? { sendId: record.id, state: record.state } : undefined;
  // startSend resumes a send whose fan-out was interrupted (unless it was cancelled) instead of refusing it.
  const resumes = record !== undefined && !record.fanOutDone && record.state !== 'cancelled';
  let refusal: string | undefined;
  if (issue.status !== 'finished') {
    refusal = `Issue "${issue.id}" is a ${issue.status}; only a finished issue can be sent. Set "status: finished" in its file when it is ready.`;
  } else if (!counts) {
    refusal = `List "${list}" has no subscribers; import some with: newsletter subscribers import <file.csv> --list ${list}`;
  } else if (record && !resumes) {
    refusal = `Issue "${issue.id}" was already sent to list "${list}" (send ${record.id}, ${record.state}). Sending it again would mail every subscriber twice.`;
  }
  return { refusal, existing, resumes, counts };
}

function confirmationBody(
  reply: FastifyReply,
  options: { readonly issue: Issue; readonly list: string; readonly lists: readonly string[]; readonly check: SendCheck; readonly subject: string },
): string {
  const { issue, list, check } = options;
  const active = check.counts?.byStatus.active ?? 0;
  const suppressed = check.counts ? check.counts.total - active : 0;
  const lists = options.lists.includes(list) ? options.lists : [...options.lists, list];
  const existingLink = check.existing
    ? `<p>Latest send of ${escape(issue.id)} to ${escape(list)}: <a href="/admin/sends/${encodeURIComponent(check.existing.sendId)}">${escape(check.existing.sendId)}</a> <span class="state state-${escape(check.existing.state)}">${escape(check.existing.state)}</span></p>`
    : '';
  const facts =
    `<dl class="facts">` +
    `<dt>Issue</dt><dd>${escape(issue.id)}: ${escape(issue.title)} <span class="state state-${escape(issue.status)}">${escape(issue.status)}</span></dd>` +
    `<dt>Subject</dt><dd class="subject">${escape(options.subject)}</dd>` +
    `<dt>Preheader</dt><dd class="preheader">${escape(issue.preheader)}</dd>` +
    `<dt>List</dt><dd>${escape(list)}</dd>` +
    `<dt>Active recipients</dt><dd><b class="active-count">${active}</b>` +
    (check.counts ? ` <small>(${check.counts.total} on the list; ${suppressed} suppressed: unsubscribed, bounced or complained, not mailed)</small>` : '') +
    `</dd></dl>`;
  const chooseList = `<form method="get" class="inline-form"><label>List <select name="list">${selectOptions(lists, list)}</select></label><button type="submit" class="secondary">Change list</button></form>`;
  if (check.refusal)
    return (
      problem(check.refusal) + facts + existingLink + chooseList + `<p><a href="/admin/issues/${encodeURIComponent(issue.id)}">Back to the preview</a></p>`
    );
  return (
    facts +
    (check.resumes
      ? notice('An earlier send of this issue to this list stopped while it was being queued; confirming finishes queueing that send (nobody gets it twice).')
      : '') +
    existingLink +
    chooseList +
    `<form method="post" action="/admin/issues/${encodeURIComponent(issue.id)}/send" class="stack">` +
    csrfField(reply) +
    `<input type="hidden" name="list" value="${escape(list)}"><input type="hidden" name="confirm" value="yes">` +
    `<p>This mails ${escape(issue.id)} to every active subscriber of ${escape(list)}, now. It cannot be undone; it can be paused or cancelled while it runs.</p>` +
    `<div class="actions"><button type="submit">Send to ${active} active subscriber${active === 1 ? '' : 's'}</button>` +
    `<a href="/admin/issues/${encodeURIComponent(issue.id)}">Cancel</a></div></form>`
  );
}
