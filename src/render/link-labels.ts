import type { LinkType } from '../content/issue-schema.ts';

/** How each link type shows on a button and in the text part. */
export const LINK_LABELS: Readonly<Record<LinkType, { readonly icon: string; readonly label: string }>> = {
  paper: { icon: '📚', label: 'Paper' },
  code: { icon: '💻', label: 'Code' },
  model: { icon: '🤗', label: 'Model' },
  other: { icon: '🔗', label: 'Link' },
};

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

/** "Vol.138 for Jan 05 - Jan 11, 2026", the line under the newsletter's name. */
export function formatDateLine(volume: number, from: string, to: string): string {
  const [fromYear, fromMonth, fromDay] = from.split('-');
  const [toYear, toMonth, toDay] = to.split('-');
  const month = (value: string | undefined) => MONTHS[Number(value) - 1] ?? '';
  const start = `${month(fromMonth)} ${fromDay}${fromYear === toYear ? '' : `, ${fromYear}`}`;
  return `Vol.${volume} for ${start} - ${month(toMonth)} ${toDay}, ${toYear}`;
}
