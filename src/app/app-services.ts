import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config/index.ts';
import type { RedisProblem } from '../core/redis-requirements.ts';
import type { Logger } from '../logger.ts';
import type { EventStore } from '../store/event-store.ts';
import type { PacingStore } from '../store/pacing-store.ts';
import type { ReportInbox } from '../store/report-inbox.ts';
import type { SendControlStore } from '../store/send-control.ts';
import type { SendJobData } from '../store/send-queue.ts';
import type { SendStore } from '../store/send-store.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';

/**
 * What the use cases work with: the stores, the queues and the logger over one Redis connection.
 * src/services.ts opens it (Services adds close()); the use cases name it here, below the wiring.
 */
export interface AppServices {
  readonly config: Config;
  readonly logger: Logger;
  readonly redis: Redis;
  readonly subscribers: SubscriberStore;
  readonly sends: SendStore;
  readonly queue: Queue<SendJobData>;
  /** Delivery events: per subscriber and per send. */
  readonly events: EventStore;
  /** Received bounce and complaint reports, held until applied. */
  readonly reports: ReportInbox;
  /** Pause, resume, cancel, the `sending` claims, the breakers' counts and the send event stream. */
  readonly control: SendControlStore;
  /** The pacing budgets every worker process shares. */
  readonly pacing: PacingStore;
  /**
   * What start-up found wrong with Redis as a durable store (eviction policy, persistence, or a
   * setting it could not read); empty when all is well. Logged once per process; the CLI prints them.
   */
  readonly redisWarnings: readonly RedisProblem[];
}
