/* Library entry point: the pooler and its configuration loader (the full embedding API comes later). */

export { Pooler } from './pooler.js';
export { loadConfig, parseConfigText, ConfigError, type Config } from './config/loader.js';
export type { Settings } from './config/params.js';
export { VERSION } from './version.js';
