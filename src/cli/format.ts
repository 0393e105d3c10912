/** "12.3 KB (12595 bytes)": sizes the editor compares with Gmail's clipping limit. */
export function formatBytes(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KB (${bytes} bytes)`;
}
