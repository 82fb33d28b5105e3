// Shows each <time datetime> of the page in the browser's own time zone and
// the page's language ("27 Nov 2026, 18:49 GMT+3"): the server cannot know
// the owner's zone. Without this file (or JavaScript) the server's text
// stays, the time in UTC with the zone named. Loaded as a file, never
// inline: the pages' CSP allows scripts from 'self' only.
(function () {
  "use strict";
  var format;
  try {
    format = new Intl.DateTimeFormat(document.documentElement.lang || undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
  } catch (e) {
    return; // no Intl: keep UTC
  }
  var times = document.querySelectorAll("time[datetime]");
  for (var i = 0; i < times.length; i++) {
    var when = new Date(times[i].getAttribute("datetime"));
    if (!isNaN(when.getTime())) {
      times[i].title = times[i].textContent;
      times[i].textContent = format.format(when);
    }
  }
})();
