/**
 * Who may do what in the console, the API and the queue dashboard: the roles and their permissions,
 * kept as data. Routes ask for a permission, never for a role, so changing a role is one edit here.
 */
export const ROLES = ['admin', 'editor', 'ops'] as const;
/** One of ROLES. */
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = [
  /** See the issues, their status and how each send ended. */
  'issues.read',
  /** Preview an issue as the subscriber gets it, and make a test send outside the bulk queue. */
  'issues.preview',
  /** Start a send, or schedule one (at a time, or weekly). */
  'sends.start',
  /** See every send: state, progress, rates, per-domain breakdown (counts, no subscriber addresses). */
  'sends.read',
  /** See who failed and why: the failures table, its CSV and JSON (subscriber addresses). */
  'sends.failures',
  /** Pause, resume, cancel a send, and retry its failed recipients. */
  'sends.control',
  /** See the schedules. */
  'schedules.read',
  /** Create and delete schedules. */
  'schedules.manage',
  /** Look at the queues (bull-board, read only). */
  'queues.read',
  /** Change jobs in the queues (bull-board's retry, clean, promote, remove). */
  'queues.write',
  /** Scrape /metrics. */
  'metrics.read',
  /** Add and remove console users and API tokens. */
  'users.manage',
] as const;
/** One of PERMISSIONS. */
export type Permission = (typeof PERMISSIONS)[number];

/**
 * The editor prepares and sends issues; ops run the sends and queues once they are going; an admin
 * does everything, users included. Both editor and ops see every send, so each can tell how one ended;
 * only ops (and admins) see who failed, since the failures name subscribers' addresses.
 */
export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  admin: PERMISSIONS,
  editor: ['issues.read', 'issues.preview', 'sends.start', 'sends.read', 'schedules.read', 'schedules.manage'],
  ops: [
    'issues.read',
    'sends.read',
    'sends.failures',
    'sends.control',
    'sends.start',
    'schedules.read',
    'schedules.manage',
    'queues.read',
    'queues.write',
    'metrics.read',
  ],
};

/** Whether a role carries a permission. */
export function can(role: Role, permission: Permission): boolean {
  return ROLE_PERMISSIONS[role].includes(permission);
}

/** Whether a text names a role (for CLI and API input). */
export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}
