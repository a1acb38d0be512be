// One result of `airlock doctor`, shared by the session checks (image.ts) and the checks of other
// launchers' image guides (doctor-profiles.ts).
export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
  /** How to fix a failure. */
  readonly fix?: string;
}
