import Handlebars from 'handlebars';

/**
 * The only placeholders a compiled issue may keep for the per-subscriber fill. Anything else in a
 * compiled template (a "{{topic}}" that slipped in through issue content, a helper) would either
 * print subscriber data where the editor didn't put it or fail every job of the send, so
 * compileIssue refuses it up front.
 */
export const SUBSCRIBER_FIELD_NAMES = ['name', 'email', 'unsubscribeUrl'] as const;
/** One of SUBSCRIBER_FIELD_NAMES. */
export type SubscriberFieldName = (typeof SUBSCRIBER_FIELD_NAMES)[number];
/** SUBSCRIBER_FIELD_NAMES as a set. */
export const SUBSCRIBER_FIELDS: ReadonlySet<string> = new Set(SUBSCRIBER_FIELD_NAMES);

/**
 * The raw-block helper that keeps editor text literal in the text part: `{{{{raw}}}}…{{{{/raw}}}}`
 * prints its content untouched, where backslash escapes can't (Handlebars reads "\\{{" as a
 * backslash followed by a live placeholder).
 */
export const RAW_HELPER = 'raw';

/** Registers RAW_HELPER on a Handlebars environment. */
export function registerRawHelper(handlebars: typeof Handlebars): void {
  handlebars.registerHelper(RAW_HELPER, (options: Handlebars.HelperOptions) => options.fn(undefined));
}

/** The per-subscriber values of a compiled issue's placeholders. */
export type SubscriberFields = Readonly<Record<SubscriberFieldName, string>>;

/**
 * Compiles the two stage-two templates of a compiled issue the one way every reader of them must:
 * strict, known helpers only, HTML-escaping for the HTML part, raw text (CRLF line ends, as the text
 * part travels) for the text part. The worker and the web version both fill through this.
 */
export function compileStageTwo(templates: { readonly htmlTemplate: string; readonly textTemplate: string }): {
  readonly html: Handlebars.TemplateDelegate<SubscriberFields>;
  readonly text: Handlebars.TemplateDelegate<SubscriberFields>;
  readonly escape: (value: string) => string;
} {
  const handlebars = Handlebars.create();
  registerRawHelper(handlebars);
  return {
    html: handlebars.compile(templates.htmlTemplate, { strict: true, knownHelpersOnly: true }),
    text: handlebars.compile(toCrlf(templates.textTemplate), { strict: true, knownHelpersOnly: true, knownHelpers: { [RAW_HELPER]: true }, noEscape: true }),
    escape: (value) => handlebars.escapeExpression(value),
  };
}

/** Canonical line ends (CRLF), as a text part travels (RFC 2045 §6.8 encodes after canonicalising). */
export function toCrlf(text: string): string {
  return text.replace(/\r?\n/g, '\r\n');
}

/** Lists what in a stage-two template is not one of the subscriber fields, an `#if` on one, or a raw block. */
export function unexpectedPlaceholders(source: string): string[] {
  const problems: string[] = [];
  const isField = (node: hbs.AST.Node | undefined) => node?.type === 'PathExpression' && SUBSCRIBER_FIELDS.has((node as hbs.AST.PathExpression).original);
  const describe = (node: hbs.AST.Node) =>
    `line ${node.loc.start.line}: ${source.split('\n')[node.loc.start.line - 1]?.slice(node.loc.start.column, node.loc.end.column) ?? node.type}`;

  const visit = (node: hbs.AST.Node | undefined): void => {
    if (!node) return;
    switch (node.type) {
      case 'Program':
        (node as hbs.AST.Program).body.forEach(visit);
        return;
      case 'ContentStatement':
      case 'CommentStatement':
        return;
      case 'MustacheStatement': {
        const mustache = node as hbs.AST.MustacheStatement;
        if (!isField(mustache.path) || mustache.params.length > 0) problems.push(describe(node));
        return;
      }
      case 'BlockStatement': {
        const block = node as hbs.AST.BlockStatement;
        if (block.path.original === RAW_HELPER && block.params.length === 0) return;
        if (block.path.original !== 'if' || block.params.length !== 1 || !isField(block.params[0])) problems.push(describe(node));
        visit(block.program);
        visit(block.inverse);
        return;
      }
      default:
        problems.push(describe(node));
    }
  };
  visit(Handlebars.parse(source));
  return problems;
}

/** Escapes plain text for stage-one HTML and encodes braces, so content can never become a stage-two tag. */
export function stageOneText(text: string): Handlebars.SafeString {
  return new Handlebars.SafeString(Handlebars.escapeExpression(text).replaceAll('{', '&#123;').replaceAll('}', '&#125;'));
}

/** A URL for an href: braces percent-encoded (they are not valid in a URL anyway), then HTML-escaped. */
export function stageOneUrl(url: string): Handlebars.SafeString {
  return new Handlebars.SafeString(Handlebars.escapeExpression(url.replaceAll('{', '%7B').replaceAll('}', '%7D')));
}
