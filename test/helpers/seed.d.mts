/** See seed.mjs. */
export function seedStore(store: string, env: NodeJS.ProcessEnv, opts: { tenants: number; perTenant?: number }): Promise<string[]>;
