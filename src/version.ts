/* The version reported by --version and (later) SHOW VERSION. */

export const VERSION = '0.1.0';
export const VERSION_LINE = `pgtide ${VERSION}`;
