/* Library entry point (`import { Pooler } from 'pgtide'`): the Pooler, its options, events and stats types, and
 * ConfigError. docs/library.md explains them; nothing else of the implementation is exported. */

export {
  Pooler,
  PoolerProblem,
  type CloseOptions,
  type ListeningInfo,
  type LogLevel,
  type LogRecord,
  type PoolerEvents,
  type ReloadResult,
} from './api/pooler.js';
export type {
  AuthOptions,
  AuthUser,
  DatabaseOptions,
  PoolerOptions,
  SettingInput,
  SettingsOptions,
  UserOptions,
} from './config/options.js';
export type { DatabaseStatsRow, PoolerStats, PoolRow, TotalsRow } from './api/stats.js';
export { ConfigError } from './config/loader.js';
export type { AuthType, ConfigWarning, PoolMode } from './config/types.js';
export type { SettingName, Settings } from './config/params.js';
export { VERSION } from './version.js';
