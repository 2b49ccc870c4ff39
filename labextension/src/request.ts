import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * A refused request: the server's `{message, hint}` reply, or what went wrong on
 * the way (no server extension, network).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly hint: string | null = null
  ) {
    super(message);
  }
}

/**
 * Call a route of nbprod's server extension (`<base_url>nbprod/<endpoint>`).
 *
 * Token and XSRF are ServerConnection's business. `body` is sent as is, so callers
 * may pass JSON text they wrote themselves (see NbprodAPI.sweep).
 */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'nbprod', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(0, `the Jupyter server did not answer: ${error}`);
  }
  const text = await response.text();
  let data: any = null;
  if (text && (response.headers.get('Content-Type') ?? '').includes('json')) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    if (response.status === 404 && !(data && data.message)) {
      // Jupyter's own 404 page: no such route.
      throw new ApiError(
        404,
        `the Jupyter server has no route nbprod/${endpoint.split('?')[0]}`,
        'is nbprod installed in the environment of the Jupyter server, at the same version ' +
          'as this JupyterLab extension? (`jupyter server extension list`)'
      );
    }
    const message = (data && data.message) || response.statusText || 'error';
    throw new ApiError(response.status, message, (data && data.hint) || null);
  }
  return data as T;
}
