/*
 * The console's live updates: a progressive enhancement of the server-rendered sends dashboard
 * (/admin/sends) and send page (/admin/sends/<id>). Every page works without this script.
 *
 * Hooks (the server renders them; browser tests may rely on them):
 *   [data-live="<url>"]       the JSON to poll: /admin/sends.json or /admin/sends/<id>.json
 *   [data-send="<sendId>"]    one send: a dashboard row, or the send page's main section;
 *                             data-final="true|false" tells whether the send can still change
 *   [data-field="<name>"]     inside a [data-send]: a value shown as text. Names: state, total,
 *                             accepted, failed, skipped, bounced, complained, pending,
 *                             progressText, rate, eta, bounceRate, complaintRate, blockRate
 *                             (class "over" when above the breaker threshold), stateReason,
 *                             heldDomains, finishedAt. state also carries class "state-<state>".
 *   [data-field="progress"]   the progress bar (its first child's width, aria-valuenow)
 *   [data-if="<field>"]       hidden while that field's text is empty
 *   [data-action="<action>"]  pause / resume / cancel / retry-failed button: hidden unless it applies
 *   [data-chart]              the progress chart (SVG), redrawn from the JSON's chart shapes
 *   [data-domains]            the per-domain table body, rebuilt from the JSON's domainRows
 *   [data-live-status]        where the script says when it last updated
 *   [data-live-new]           shown when the dashboard's JSON has a send the page doesn't list
 *   [data-failures-stale]     shown when failed, bounced or complained changed since the page
 *                             loaded (the failures table itself is not live: it keeps its paging)
 *
 * It polls every 2 s while any send on the page is not final, and stops once all are. All text goes
 * in through textContent and the chart through createElementNS with a fixed list of tags and
 * attributes: nothing from the server is ever parsed as markup.
 */
(function liveConsole() {
  'use strict';

  var POLL_MS = 2000;
  /** Consecutive failed polls after which the script gives up (the Refresh link still works). */
  var MAX_FAILURES = 5;
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var CHART_TAGS = ['line', 'polyline', 'text'];
  var CHART_ATTRIBUTES = ['class', 'x', 'y', 'x1', 'y1', 'x2', 'y2', 'points', 'text-anchor'];

  var root = document.querySelector('[data-live]');
  if (!root || typeof window.fetch !== 'function') return;
  var url = root.getAttribute('data-live');
  var status = root.querySelector('[data-live-status]');
  var failures = 0;
  var timer;
  /** The counts behind the failures table as the page was rendered, to tell when it is out of date. */
  var FAILURE_FIELDS = ['failed', 'bounced', 'complained'];
  var renderedFailureCounts = failureCounts();

  function failureCounts() {
    return FAILURE_FIELDS.map(function (name) {
      var element = root.querySelector('[data-send] [data-field="' + name + '"]');
      return element ? element.textContent : '';
    }).join('/');
  }

  function sendElements() {
    return Array.prototype.slice.call(root.querySelectorAll('[data-send]'));
  }

  function anyLive() {
    return sendElements().some(function (element) {
      return element.getAttribute('data-final') !== 'true';
    });
  }

  function say(text) {
    if (status) status.textContent = text;
  }

  function elementOfSend(sendId) {
    var elements = sendElements();
    for (var index = 0; index < elements.length; index += 1) {
      if (elements[index].getAttribute('data-send') === sendId) return elements[index];
    }
    return undefined;
  }

  function updateSend(element, view) {
    element.setAttribute('data-final', view.final ? 'true' : 'false');
    element.querySelectorAll('[data-field]').forEach(function (target) {
      var name = target.getAttribute('data-field');
      if (name === 'progress') {
        target.setAttribute('aria-valuenow', String(view.progressPercent));
        var fill = target.firstElementChild;
        if (fill) fill.style.width = view.progressPercent + '%';
        return;
      }
      if (!Object.prototype.hasOwnProperty.call(view.text, name)) return;
      target.textContent = view.text[name];
      if (name === 'state') target.className = 'state state-' + view.state;
      if (Object.prototype.hasOwnProperty.call(view.over, name)) target.classList.toggle('over', view.over[name] === true);
    });
    element.querySelectorAll('[data-if]').forEach(function (target) {
      target.hidden = !view.text[target.getAttribute('data-if')];
    });
    element.querySelectorAll('[data-action]').forEach(function (target) {
      target.hidden = view.actions.indexOf(target.getAttribute('data-action')) === -1;
    });
  }

  function drawChart(svg, chart) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute('viewBox', '0 0 ' + Number(chart.width) + ' ' + Number(chart.height));
    svg.setAttribute('aria-label', chart.label);
    var title = document.createElementNS(SVG_NS, 'title');
    title.textContent = chart.label;
    svg.appendChild(title);
    chart.shapes.forEach(function (shape) {
      if (CHART_TAGS.indexOf(shape.tag) === -1) return;
      var node = document.createElementNS(SVG_NS, shape.tag);
      CHART_ATTRIBUTES.forEach(function (name) {
        var value = shape.attrs[name];
        if (value !== undefined && value !== null) node.setAttribute(name, String(value));
      });
      if (typeof shape.text === 'string') node.textContent = shape.text;
      svg.appendChild(node);
    });
  }

  function fillDomains(body, rows) {
    var columns = body.parentNode.querySelectorAll('thead th').length || 1;
    while (body.firstChild) body.removeChild(body.firstChild);
    if (rows.length === 0) {
      var emptyRow = body.insertRow();
      var emptyCell = emptyRow.insertCell();
      emptyCell.colSpan = columns;
      emptyCell.textContent = 'No recipient has finished yet.';
      return;
    }
    rows.forEach(function (row) {
      var tableRow = body.insertRow();
      tableRow.insertCell().textContent = row.domain;
      row.cells.forEach(function (value) {
        var cell = tableRow.insertCell();
        cell.className = 'num';
        cell.textContent = value;
      });
    });
  }

  function apply(data) {
    if (Array.isArray(data.views)) {
      // The dashboard: one view per send listed.
      var unknown = false;
      data.views.forEach(function (view) {
        var element = elementOfSend(view.sendId);
        if (element) updateSend(element, view);
        else unknown = true;
      });
      var notice = root.querySelector('[data-live-new]');
      if (notice && unknown) notice.hidden = false;
      return;
    }
    if (data.view) {
      // One send's page.
      var section = elementOfSend(data.view.sendId);
      if (section) updateSend(section, data.view);
      var svg = root.querySelector('[data-chart]');
      if (svg && data.chart && Array.isArray(data.chart.shapes)) drawChart(svg, data.chart);
      var domains = root.querySelector('[data-domains]');
      if (domains && Array.isArray(data.domainRows)) fillDomains(domains, data.domainRows);
      var stale = root.querySelector('[data-failures-stale]');
      if (stale && failureCounts() !== renderedFailureCounts) stale.hidden = false;
    }
  }

  function schedule() {
    window.clearTimeout(timer);
    if (!anyLive()) {
      say('· every send here is over: no more updates.');
      return;
    }
    timer = window.setTimeout(poll, POLL_MS);
  }

  function poll() {
    if (document.hidden) {
      // Nobody is looking: wait for the tab to come back (visibilitychange) instead.
      return;
    }
    window
      .fetch(url, { headers: { accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store', redirect: 'manual' })
      .then(function (response) {
        var type = response.headers.get('content-type') || '';
        if (!response.ok || type.indexOf('application/json') !== 0) {
          throw new Error(response.status === 0 || response.status === 401 || response.status === 403 ? 'session ended' : 'HTTP ' + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        apply(data);
        say('· updated ' + new Date().toLocaleTimeString());
        schedule();
      })
      .catch(function (error) {
        failures += 1;
        if (error && error.message === 'session ended') {
          say('· live updates stopped: log in again.');
          return;
        }
        if (failures >= MAX_FAILURES) {
          say('· live updates stopped: the server did not answer. Refresh to try again.');
          return;
        }
        say('· could not update; trying again…');
        timer = window.setTimeout(poll, POLL_MS);
      });
  }

  document.addEventListener('visibilitychange', function () {
    if (!document.hidden && anyLive()) {
      window.clearTimeout(timer);
      poll();
    }
  });

  if (anyLive()) {
    say('· updating every 2 s');
    timer = window.setTimeout(poll, POLL_MS);
  }
})();
