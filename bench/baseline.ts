import Handlebars from 'handlebars';
import mjml2html from 'mjml';
import nodemailer from 'nodemailer';
import type { Config } from '../config/index.ts';
import type { Issue } from '../src/content/issue-schema.ts';
import { issueSubject, layoutContext } from '../src/render/compile-issue.ts';
import { loadTemplateSet } from '../src/render/templates.ts';
import { buildTextTemplate } from '../src/render/text-email.ts';
import { unsubscribeUrl } from '../src/core/tokens.ts';
import { TEMPLATES_DIR } from '../src/render/compile-issue.ts';
import type { Subscriber } from '../src/core/subscriber.ts';

export interface BaselineResult {
  readonly messages: number;
  readonly seconds: number;
  readonly messagesPerSecond: number;
  readonly msPerMessage: number;
  /** Mean time of the MJML compile alone, per message. */
  readonly mjmlMsPerMessage: number;
}

/**
 * The naive implementation the pipeline is measured against: per subscriber, render the stage-one
 * template set, compile the MJML, fill the subscriber's fields, and `sendMail` with html + text
 * (nodemailer's default quoted-printable composition), one message after the other.
 * The transport is pooled with ONE connection that is never recycled, so the sink's ~100 ms
 * greeting per new connection is paid once (in the warm-up message) and not per message.
 */
export async function runNaiveBaseline(options: {
  readonly config: Config;
  readonly issue: Issue;
  /** Recipients, used in turn (cycled if fewer than `messages`). */
  readonly subscribers: readonly Subscriber[];
  /** Timed messages; one more is sent first as an untimed warm-up. */
  readonly messages: number;
  readonly smtpUrl: string;
  readonly list: string;
}): Promise<BaselineResult> {
  const { config, issue, subscribers, list } = options;
  if (subscribers.length === 0 || options.messages < 1) throw new Error('the baseline needs at least one subscriber and one message');
  const templates = await loadTemplateSet(TEMPLATES_DIR);
  // The same stage-one context compileIssue builds (Markdown converted once; not counted against the baseline).
  const context = layoutContext(issue, { newsletterName: config.mail.newsletterName, publicUrl: config.publicUrl, listName: list });
  const { dateLine, viewInBrowserUrl } = context;
  const subject = issueSubject(issue, config.mail.newsletterName);
  const from = `"${config.mail.from.name}" <${config.mail.from.address}>`;
  const sendId = `${issue.id}.${list}.baseline`;

  const transport = nodemailer.createTransport({ url: options.smtpUrl, pool: true, maxConnections: 1, maxMessages: Infinity });
  let mjmlMs = 0;
  const sendOne = async (subscriber: Subscriber) => {
    const mjmlSource = templates.render(context.values);
    const mjmlStart = performance.now();
    const { html: htmlTemplate } = await mjml2html(mjmlSource, { validationLevel: 'strict', keepComments: false });
    mjmlMs += performance.now() - mjmlStart;
    const fields = {
      name: subscriber.name,
      email: subscriber.email,
      unsubscribeUrl: unsubscribeUrl(config.publicUrl, config.appSecret, subscriber.id, list, sendId),
    };
    const html = Handlebars.compile(htmlTemplate)(fields);
    const textSource = buildTextTemplate(issue, { newsletterName: config.mail.newsletterName, dateLine, viewInBrowserUrl, listName: list });
    const text = Handlebars.compile(textSource, { noEscape: true })(fields);
    await transport.sendMail({ from, to: subscriber.name ? { name: subscriber.name, address: subscriber.email } : subscriber.email, subject, html, text });
  };

  try {
    const count = options.messages;
    await sendOne(subscribers[0]!); // opens the one connection and warms the JIT; not timed
    mjmlMs = 0;
    const start = performance.now();
    for (let index = 0; index < count; index += 1) await sendOne(subscribers[(index + 1) % subscribers.length]!);
    const seconds = (performance.now() - start) / 1000;
    return {
      messages: count,
      seconds,
      messagesPerSecond: count / seconds,
      msPerMessage: (seconds * 1000) / count,
      mjmlMsPerMessage: mjmlMs / count,
    };
  } finally {
    transport.close();
  }
}
