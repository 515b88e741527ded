// Serves the app's own files from the cache the page filled (main.ts), so it loads offline.
// Network first for everything else; the WebSocket to Kora never passes through here.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(
    fetch(request).catch(async () => {
      const cache = await caches.open("kora-todo-shell");
      return (await cache.match(request, { ignoreSearch: true })) ?? Response.error();
    }),
  );
});
