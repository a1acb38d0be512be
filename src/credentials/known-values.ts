// The recent real values of one credential, so echoes of a rotated-out secret are still scrubbed.

export class KnownValues {
  private readonly values: string[] = [];

  /** `keep`: how many of the newest values are remembered. */
  constructor(private readonly keep = 8) {}

  /** Remembers `value` (once) and returns it. */
  add(value: string): string {
    if (!this.values.includes(value)) {
      this.values.push(value);
      if (this.values.length > this.keep) this.values.shift();
    }
    return value;
  }

  /** The remembered values, oldest first (the live list). */
  list(): readonly string[] {
    return this.values;
  }
}
