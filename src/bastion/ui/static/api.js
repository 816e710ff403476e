// The API client. The token lives in sessionStorage only (this tab, until it closes or the
// person signs out) — never localStorage, never a cookie, never a URL — and is sent as
// `Authorization: Bearer` to this origin only.

const TOKEN = "bastion.token";
const TOKEN_SHAPE = /^bst_[0-9A-Za-z]{72}$/;

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN);
  },
  set(token) {
    sessionStorage.setItem(TOKEN, token);
  },
  clear() {
    sessionStorage.clear();
  },
  looksLikeToken(text) {
    return TOKEN_SHAPE.test(text);
  },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthenticated = () => {};

/** Called when the server says the token is no longer good (expired, revoked). */
export function whenSignedOut(callback) {
  onUnauthenticated = callback;
}

/** Call the API: parsed JSON, or an ApiError with the server's code and message. */
export async function api(path, { method = "GET", body, token } = {}) {
  if (!path.startsWith("/")) throw new Error("API paths are absolute");
  const bearer = token ?? session.token;
  const headers = { Accept: "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "ui.network", `the server did not answer (${error.message})`);
  }
  if (!response.ok) {
    let code = `http.${response.status}`;
    let message = response.statusText || "request failed";
    try {
      const doc = await response.json();
      if (doc && doc.error && typeof doc.error === "object") {
        code = String(doc.error.code ?? code);
        message = String(doc.error.message ?? message);
      }
    } catch {
      // not JSON: keep the status line
    }
    const error = new ApiError(response.status, code, message);
    if (response.status === 401 && token === undefined) onUnauthenticated(error);
    throw error;
  }
  return response.json();
}
