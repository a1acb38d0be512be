// Errors of `airlock run` the CLI prints as they are (a message that says what to do, no stack).
export class LaunchError extends Error {}
